import Foundation
import ManifoldAPI
import ManifoldClient
import ManifoldCore
import ManifoldTestSupport
import Testing

/// The web dashboard in a real browser (Debian's headless Chromium through chromedriver) against a real coordinator
/// process, a real registry and agents speaking the real protocol: sign in, watch a three-platform build change live,
/// follow a log, retry one platform and see the list published again, cancel another build; and the same pages with
/// JavaScript disabled. Screenshots go to `$MANIFOLD_TEST_LOGS/screenshots` (default /tmp/manifold-test-logs).
@Suite(.serialized) struct DashboardBrowserTests {
    static let linux = Platform(os: "linux", architecture: "amd64")
    static let arm = Platform(os: "linux", architecture: "arm64")
    static let windows = Platform(os: "windows", architecture: "amd64", osVersion: "10.0.20348")

    static var screenshots: URL {
        URL(fileURLWithPath: ProcessInfo.processInfo.environment["MANIFOLD_TEST_LOGS"] ?? "/tmp/manifold-test-logs")
            .appendingPathComponent("screenshots")
    }

    /// The state a platform row shows, read from the page.
    static func rowState(_ browser: WebDriver, _ key: String) async throws -> String {
        try await browser.execute(
            "var row = document.getElementById('job-' + arguments[0]); return row ? row.getAttribute('data-state') : '';", [key])
    }

    /// Waits until the browser is on a page whose URL `matches` and which holds an element for `css`. The URL changes
    /// when the new page commits, before it is parsed: a CI run read the first row of a table that was not there yet.
    static func waitForPage(
        _ browser: WebDriver, _ what: String, showing css: String, url matches: (String) -> Bool
    ) async throws {
        try await browser.wait(what) {
            guard matches(try await browser.currentURL()) else { return false }
            return try await !browser.findAll(css).isEmpty
        }
    }

    static func buildState(_ browser: WebDriver) async throws -> String {
        try await browser.execute(
            "var s = document.querySelector('#build-live h1 .state'); return s ? s.textContent : '';")
    }

    static func submit(_ harness: BuildCLIHarness, _ platforms: [String], context: URL) async throws -> BuildView {
        let submitted = try await harness.cli(
            ["build", "submit", harness.image, "--tag", "1.0", "--tag", "latest", "--context", context.path, "--output", "json"]
                + platforms.flatMap { ["--platform", $0] })
        guard submitted.status == 0 else { throw TestEnvironmentError("submit failed: \(submitted.stderr)") }
        return try APICoding.decoder().decode(BuildView.self, from: Data(submitted.stdout.utf8))
    }

    /// Form controls without a label, as `tag#id` (empty when every input and select has one).
    static func unlabelled(_ browser: WebDriver) async throws -> String {
        try await browser.execute(
            """
            return Array.from(document.querySelectorAll('input:not([type=hidden]), select, textarea'))
              .filter(function (e) { return !e.labels || e.labels.length === 0; })
              .map(function (e) { return e.tagName + '#' + e.id; }).join(',');
            """)
    }

    @Test func signInWatchABuildLiveFollowALogRetryAPlatformAndCancelAnother() async throws {
        let harness = try await BuildCLIHarness("dashboard")
        let linuxAgent = try await ScriptedAgent("lin-amd64", platform: Self.linux, harness: harness)
        let armAgent = try await ScriptedAgent("lin-arm64", platform: Self.arm, harness: harness)
        let windowsAgent = try await ScriptedAgent("win-ltsc2022", platform: Self.windows, harness: harness)
        let context = try harness.directory("app", ["Dockerfile": "FROM scratch\nCOPY app.txt /\n", "app.txt": "hello\n"])
        let build = try await Self.submit(harness, ["linux/amd64", "linux/arm64", "windows/amd64:10.0.20348"], context: context)

        // `manifold dashboard` prints where to go.
        let printed = try await harness.cli(["dashboard"])
        #expect(printed.status == 0, "\(printed.stderr)")
        #expect(printed.stdout == "\(harness.url)/\n")

        let browser = try await WebDriver.start(logDirectory: harness.scratch.url)
        do {
            // A link to the build leads through the sign-in page and back to the build.
            try await browser.navigate(to: "\(harness.url)/builds/\(build.id)")
            try await browser.wait("the sign-in page") { try await browser.currentURL().contains("/sign-in") }
            #expect(try await Self.unlabelled(browser) == "")
            try await browser.type(try await browser.find("#token"), harness.admin)
            try await browser.click(try await browser.find("form.signin button[type=submit]"))
            try await Self.waitForPage(browser, "the build page", showing: "#job-windows-amd64-10-0-20348") {
                $0.hasSuffix("/builds/\(build.id)")
            }
            for key in ["linux-amd64", "linux-arm64", "windows-amd64-10-0-20348"] {
                #expect(try await Self.rowState(browser, key) == "queued", "\(key)")
            }
            #expect(
                try await browser.text(try await browser.find("#job-windows-amd64-10-0-20348 th")).contains(
                    "os.version 10.0.20348"))
            // A marker in the page's memory: it is still there only if the page was never reloaded.
            _ = try await browser.execute("window.manifoldMarker = 'same page'; return 'ok';")

            // Agents take their jobs: the rows change without a reload.
            let linuxLease = try await linuxAgent.take()
            try await browser.wait("the linux row to show assigned") {
                try await Self.rowState(browser, "linux-amd64") == "assigned"
            }
            #expect(try await browser.text(try await browser.find("#job-linux-amd64")).contains("lin-amd64"))
            let armLease = try await armAgent.take()
            let windowsLease = try await windowsAgent.take()
            try await browser.wait("every row assigned") {
                let arm = try await Self.rowState(browser, "linux-arm64")
                let windows = try await Self.rowState(browser, "windows-amd64-10-0-20348")
                return arm == "assigned" && windows == "assigned"
            }
            try await linuxAgent.succeed(linuxLease, layer: "linux v1", logLines: ["linux step 1"])
            try await browser.wait("the linux row to succeed") { try await Self.rowState(browser, "linux-amd64") == "succeeded" }
            #expect(try await browser.execute("return window.manifoldMarker;") == "same page")
            try await browser.screenshot(to: Self.screenshots.appendingPathComponent("dashboard-build-running.png"))

            // Follow the Windows attempt's log as the agent writes it.
            try await browser.click(try await browser.find("#job-windows-amd64-10-0-20348 a[href*='/logs']"))
            try await Self.waitForPage(browser, "the log page", showing: "#log") { $0.contains("/logs?platform=windows") }
            _ = try await browser.execute("window.manifoldMarker = 'log page'; return 'ok';")
            var logged = 0
            for line in ["windows step 1: \u{1B}[32mpulling\u{1B}[0m", "windows step 2: <b>building</b>"] {
                let data = Data((line + "\n").utf8)
                _ = try await windowsAgent.client.appendLog(
                    jobId: windowsLease.jobId, epoch: windowsLease.epoch, offset: Int64(logged), data: data)
                logged += data.count
            }
            try await browser.wait("the followed log to show step 2") {
                try await browser.text(try await browser.find("#log")).contains("windows step 2: <b>building</b>")
            }
            let shown = try await browser.text(try await browser.find("#log"))
            #expect(shown.contains("windows step 1: pulling"), "\(shown)")
            #expect(!shown.contains("\u{1B}"))
            #expect(try await browser.execute("return window.manifoldMarker;") == "log page")
            #expect(try await browser.findAll("#log b").isEmpty)
            // The followed line's colour became a styled span.
            #expect(try await browser.text(try await browser.find("#log span.ansi-fg2")) == "pulling")

            // Back on the build page, the other two finish and the list is published.
            try await browser.navigate(to: "\(harness.url)/builds/\(build.id)")
            try await armAgent.succeed(armLease, layer: "arm v1")
            try await windowsAgent.succeed(windowsLease, layer: "windows v1")
            try await browser.wait("the build to be published") { try await Self.buildState(browser) == "published" }
            let firstPull = try await browser.execute("return document.getElementById('pull-digest').value;")
            let listDigest = try #require(try await harness.manifest("1.0")?.digest)
            #expect(firstPull == "docker pull \(harness.image)@\(listDigest)")
            try await browser.screenshot(to: Self.screenshots.appendingPathComponent("dashboard-build.png"))
            #expect(try await Self.unlabelled(browser) == "")
            // On a phone the page fits the screen's width (wide tables scroll inside their own box).
            try await browser.setWindowSize(width: 390, height: 844)
            try await browser.wait("the page to fit a phone's width") {
                try await browser.execute("return String(document.documentElement.scrollWidth <= window.innerWidth);") == "true"
            }
            try await browser.screenshot(to: Self.screenshots.appendingPathComponent("dashboard-build-phone.png"))
            try await browser.setWindowSize(width: 1280, height: 1000)
            // Dark mode follows the system's preference.
            let lightBackground = try await browser.execute("return getComputedStyle(document.body).backgroundColor;")
            try await browser.emulateColorScheme("dark")
            let darkBackground = try await browser.execute("return getComputedStyle(document.body).backgroundColor;")
            #expect(lightBackground == "rgb(255, 255, 255)")
            #expect(darkBackground == "rgb(13, 17, 23)")
            try await browser.screenshot(to: Self.screenshots.appendingPathComponent("dashboard-build-dark.png"))
            try await browser.emulateColorScheme("light")

            // Retry linux/amd64: a new image, and the list is published again with it.
            try await browser.click(try await browser.find("#retry-linux-amd64"))
            try await browser.wait("the linux row queued again") {
                let state = try await Self.rowState(browser, "linux-amd64")
                return state == "queued" || state == "assigned"
            }
            let retried = try await linuxAgent.take()
            #expect(retried.attempt == 2)
            let newLinux = try await linuxAgent.succeed(retried, layer: "linux v2")
            try await browser.wait("the list published again") {
                let pull = try await browser.execute(
                    "var p = document.getElementById('pull-digest'); return p ? p.value : '';")
                let state = try await Self.buildState(browser)
                return pull.hasPrefix("docker pull ") && pull != firstPull && state == "published"
            }
            let republished = try #require(try await harness.manifest("1.0")?.digest)
            #expect(republished != listDigest)
            #expect(
                try await browser.execute("return document.getElementById('pull-digest').value;")
                    == "docker pull \(harness.image)@\(republished)")
            #expect(Set(try await harness.children("1.0")).contains(newLinux.description))
            #expect(try await browser.text(try await browser.find("#job-linux-amd64")).contains("2 of"))

            // The builds list shows a new build without a reload; cancel it from its page.
            try await browser.navigate(to: "\(harness.url)/builds")
            try await browser.wait("the builds list") { try await !browser.findAll("table.builds").isEmpty }
            #expect(try await Self.unlabelled(browser) == "")
            _ = try await browser.execute("window.manifoldMarker = 'list'; return 'ok';")
            let other = try await Self.submit(harness, ["linux/s390x"], context: context)
            try await browser.wait("the new build in the list") {
                try await !browser.findAll("a[href='/builds/\(other.id)']").isEmpty
            }
            #expect(try await browser.execute("return window.manifoldMarker;") == "list")
            try await browser.click(try await browser.find("a[href='/builds/\(other.id)']"))
            try await Self.waitForPage(browser, "the other build's page", showing: "#cancel-build") { $0.hasSuffix(other.id) }
            try await browser.click(try await browser.find("#cancel-build"))
            try await browser.wait("the other build cancelled") { try await Self.buildState(browser) == "cancelled" }
            #expect(try await harness.client().build(id: other.id).state == .cancelled)

            // A link from another site (here a data: page) opens the build signed in, despite SameSite=Strict.
            try await browser.navigate(
                to: "data:text/html,<a id=link href='\(harness.url)/builds/\(build.id)'>the build</a>")
            try await browser.click(try await browser.find("#link"))
            try await browser.wait("the build page from a foreign link") {
                let url = try await browser.currentURL()
                let live = try await browser.findAll("#build-live")
                return url.hasSuffix("/builds/\(build.id)") && !live.isEmpty
            }

            // The agents page, for the admin with drain buttons.
            try await browser.navigate(to: "\(harness.url)/agents")
            try await browser.wait("the agents page") { try await browser.findAll("table.agents tbody tr").count == 3 }
            #expect(try await browser.text(try await browser.find("table.agents")).contains("win-ltsc2022"))
            #expect(try await !browser.findAll("button[aria-label='Drain lin-amd64']").isEmpty)
            try await browser.screenshot(to: Self.screenshots.appendingPathComponent("dashboard-agents.png"))
        } catch {
            try? await browser.screenshot(to: Self.screenshots.appendingPathComponent("dashboard-failure.png"))
            await browser.quit()
            throw error
        }
        await browser.quit()

        // Without JavaScript: the same pages are complete, and forms still work.
        let plain = try await WebDriver.start(logDirectory: harness.scratch.url, name: "chromedriver-nojs", javascript: false)
        do {
            try await plain.navigate(to: "\(harness.url)/")
            try await plain.wait("the sign-in page") { try await plain.currentURL().contains("/sign-in") }
            try await plain.type(try await plain.find("#token"), harness.admin)
            try await plain.click(try await plain.find("form.signin button[type=submit]"))
            try await Self.waitForPage(plain, "the builds list", showing: "table.builds") { $0.hasSuffix("/builds") }
            #expect(try await plain.text(try await plain.find("table.builds")).contains(String(build.id.prefix(16))))
            try await plain.navigate(to: "\(harness.url)/builds/\(build.id)")
            let page = try await plain.text(try await plain.find("#build-live"))
            #expect(page.contains("published") && page.contains("lin-amd64") && page.contains("win-ltsc2022"), "\(page)")
            // The copy button needs the script; without it the line is there to select.
            #expect(try await plain.attribute(try await plain.find("button[data-copy='pull-digest']"), "hidden") != nil)
            try await plain.navigate(to: "\(harness.url)/builds/\(build.id)/logs?platform=windows/amd64:10.0.20348")
            #expect(try await plain.text(try await plain.find("#log")).contains("windows step 2: <b>building</b>"))
            // Sign out with the plain form.
            try await plain.click(try await plain.find("form.signout button"))
            try await plain.wait("signed out") { try await plain.currentURL().contains("/sign-in") }
            try await plain.navigate(to: "\(harness.url)/agents")
            try await plain.wait("the sign-in page again") { try await plain.currentURL().contains("/sign-in") }
        } catch {
            try? await plain.screenshot(to: Self.screenshots.appendingPathComponent("dashboard-nojs-failure.png"))
            await plain.quit()
            throw error
        }
        await plain.quit()
    }

    /// The build page and a log page with real `manifold-agent` processes building and pushing with buildah: the
    /// rows change as the agents take and finish their jobs, the log page shows lines as the builder prints them, and
    /// a retry from the page is built again by the agent and published.
    @Test func aBuildByRealAgentsChangesLiveAndItsLogFollowsTheBuilder() async throws {
        let platforms = [
            Platform(os: "linux", architecture: "amd64"), Platform(os: "linux", architecture: "arm64"),
            Platform(os: "linux", architecture: "arm", variant: "v7"),
        ]
        let harness = try await AgentHarness("dashboard-agents", leaseTTLSeconds: 60, platforms: platforms)
        defer { harness.tearDown() }
        let go = harness.scratch.file("go")
        // Each build prints a line, waits for the test, prints another, then builds and pushes for real.
        let script = AgentHarness.buildahScript(
            before: """
                echo "step one for $MANIFOLD_PLATFORM"
                while [ ! -e '\(go.path)' ]; do sleep 0.1; done
                echo "step two for $MANIFOLD_PLATFORM"
                """)
        var agents: [ManagedProcess] = []
        defer { agents.forEach { $0.stop() } }
        for platform in platforms {
            let name = "real-" + platform.description.replacingOccurrences(of: "/", with: "-")
            #expect(try harness.join(name, platforms: [platform]).status == 0)
            agents.append(try harness.startAgent(name, script: script, platforms: [platform]))
        }
        let keys = ["linux-amd64", "linux-arm64", "linux-arm-v7"]
        let browser = try await WebDriver.start(logDirectory: harness.scratch.url, name: "chromedriver-agents")
        do {
            try await browser.navigate(to: "\(harness.baseURL)/")
            try await browser.wait("the sign-in page") { try await browser.currentURL().contains("/sign-in") }
            try await browser.type(try await browser.find("#token"), harness.admin)
            try await browser.click(try await browser.find("form.signin button[type=submit]"))
            try await browser.wait("the builds list") { try await browser.currentURL().hasSuffix("/builds") }

            let build = try await harness.submit(files: AgentHarness.context, platforms: platforms, maxAttempts: 2)
            try await browser.navigate(to: "\(harness.baseURL)/builds/\(build.id)")
            _ = try await browser.execute("window.manifoldMarker = 'build page'; return 'ok';")
            try await browser.wait("every row taken by its agent") {
                var taken = true
                for key in keys { taken = try await Self.rowState(browser, key) == "assigned" && taken }
                return taken
            }
            let page = try await browser.text(try await browser.find("#build-live"))
            for platform in platforms {
                let agent = "real-" + platform.description.replacingOccurrences(of: "/", with: "-")
                #expect(page.contains(agent), "\(agent) is not on the page:\n\(page)")
            }
            #expect(try await browser.execute("return window.manifoldMarker;") == "build page")

            // The arm64 log as its builder prints it.
            try await browser.click(try await browser.find("#job-linux-arm64 a[href*='/logs']"))
            try await Self.waitForPage(browser, "the log page", showing: "#log") { $0.contains("/logs?platform=linux") }
            _ = try await browser.execute("window.manifoldMarker = 'log page'; return 'ok';")
            try await browser.wait("the builder's first line") {
                try await browser.text(try await browser.find("#log")).contains("step one for linux/arm64")
            }
            try Data().write(to: go)
            try await browser.wait("the builder's next lines, followed live") {
                try await browser.text(try await browser.find("#log")).contains("step two for linux/arm64")
            }
            #expect(try await browser.execute("return window.manifoldMarker;") == "log page")

            // Back on the build page: the agents push, the coordinator verifies and publishes.
            try await browser.navigate(to: "\(harness.baseURL)/builds/\(build.id)")
            _ = try await browser.execute("window.manifoldMarker = 'build page'; return 'ok';")
            try await browser.wait("the build to be published") { try await Self.buildState(browser) == "published" }
            for key in keys { #expect(try await Self.rowState(browser, key) == "succeeded", "\(key)") }
            let published = try await harness.build(build.id)
            let firstPull = try await browser.execute("return document.getElementById('pull-digest').value;")
            #expect(firstPull == "docker pull \(harness.image)@\(try #require(published.listDigest))")
            try await browser.screenshot(to: Self.screenshots.appendingPathComponent("dashboard-real-agents.png"))

            // Retry arm/v7 from the page: its agent builds again and the build is published again.
            try await browser.click(try await browser.find("#retry-linux-arm-v7"))
            let republished = try await harness.wait(build.id, timeout: .seconds(180)) {
                $0.state == .published && ($0.jobs.first { $0.platform.variant == "v7" }?.attempts ?? 0) == 2
            }
            #expect(republished.state == .published, "\(republished)")
            let retriedJob = try #require(republished.jobs.first { $0.platform.variant == "v7" })
            #expect(retriedJob.attempts == 2, "\(retriedJob)")
            try await browser.wait("the retried row published again on the page") {
                let text = try await browser.text(try await browser.find("#job-linux-arm-v7"))
                let state = try await Self.buildState(browser)
                let pull = try await browser.execute(
                    "var p = document.getElementById('pull-digest'); return p ? p.value : '';")
                return text.contains("2 of") && state == "published"
                    && pull == "docker pull \(harness.image)@\(republished.listDigest?.description ?? "?")"
            }
        } catch {
            try? await browser.screenshot(to: Self.screenshots.appendingPathComponent("dashboard-real-agents-failure.png"))
            await browser.quit()
            throw error
        }
        await browser.quit()
    }
}
