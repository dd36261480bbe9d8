import Crypto
import Foundation
import ManifoldAPI
import ManifoldCore
import ManifoldHTTP
import ManifoldStore
import ManifoldTestSupport
import Synchronization
import Testing

@testable import ManifoldCoordinator

/// The web dashboard against a real coordinator: sign-in and its session cookie, every page and action under each
/// role and repository scope, CSRF refusals, escaping of hostile text, and the headers every page carries.
@Suite struct DashboardTests {
    static func scopedToken(
        _ fixture: CoordinatorFixture, _ role: Role, _ repositories: [String]?, name: String? = nil,
        expiresIn: Int? = nil
    ) async throws -> (id: String, secret: String) {
        let reply = try await fixture.call(
            "POST", "/api/v1/tokens", token: fixture.initialisation.adminToken,
            json: CreateTokenRequest(
                name: name ?? "\(role.rawValue) token", role: role, expiresInSeconds: expiresIn, repositories: repositories))
        #expect(reply.status == 201, "\(String(decoding: reply.body, as: UTF8.self))")
        let created = try reply.decode(CreatedToken.self)
        return (created.token.id, created.secret)
    }

    /// The attack on the session: its cookie must be HttpOnly, Secure, SameSite=Strict and `__Host-`, and every page
    /// carries a CSP without `unsafe-inline`, no sniffing, no framing and no referrer.
    @Test func signingInGivesAHardenedSessionCookieAndPagesCarrySecurityHeaders() async throws {
        let fixture = try await CoordinatorFixture.start()
        let browser = DashboardBrowser(fixture)

        let signedOut = try await browser.get("/builds?state=queued")
        #expect(signedOut.status == 303)
        #expect(
            signedOut.location == "/sign-in?next=%2Fbuilds%3Fstate%3Dqueued"
                || signedOut.location == "/sign-in?next=/builds%3Fstate%3Dqueued",
            "\(signedOut.location ?? "")")

        // A link from another site: SameSite=Strict withholds the cookie, so the page refreshes itself same-site.
        let fromLink = try await browser.get(
            "/builds/b_1?x=%22%3E%3Cscript%3E", headers: ["Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "navigate"])
        #expect(fromLink.status == 200)
        #expect(fromLink.text.contains(#"<meta http-equiv="refresh" content="0; url=/builds/b_1?x=%22%3E%3Cscript%3E">"#))

        let form = try await browser.get("/sign-in")
        #expect(form.status == 200)
        #expect(form.text.contains(#"<label for="token">API token</label>"#))
        let policy = try #require(form.headers["Content-Security-Policy"])
        #expect(!policy.contains("unsafe-inline") && !policy.contains("unsafe-eval"))
        #expect(
            policy.contains("frame-ancestors 'none'") && policy.contains("script-src 'self'")
                && policy.contains("default-src 'none'"))
        #expect(form.headers["X-Content-Type-Options"] == "nosniff")
        #expect(form.headers["Referrer-Policy"] == "no-referrer")
        #expect(form.headers["Cache-Control"] == "no-store")

        let signedIn = try await browser.post(
            "/sign-in", form: [("token", fixture.initialisation.adminToken), ("csrf", form.csrf ?? ""), ("next", "/agents")])
        #expect(signedIn.status == 303)
        #expect(signedIn.location == "/agents")
        let cookie = try #require(signedIn.headers.values("Set-Cookie").first { $0.hasPrefix("__Host-manifold_session=") })
        for attribute in ["Path=/", "HttpOnly", "Secure", "SameSite=Strict"] {
            #expect(cookie.contains("; \(attribute)"), "\(cookie)")
        }
        // Twelve hours (less the second the session's times are rounded to).
        let maxAge = Int(DashboardBrowser.Page.capture("Max-Age=([0-9]+)", in: cookie) ?? "") ?? 0
        #expect((43_190...43_200).contains(maxAge), "\(cookie)")
        #expect(!cookie.contains(fixture.initialisation.adminToken))
        #expect(browser.cookies["__Host-manifold_signin"] == nil)

        for path in ["/builds", "/agents"] {
            let page = try await browser.get(path)
            #expect(page.status == 200, "\(path): \(page.text)")
            #expect(page.headers["Content-Security-Policy"] == policy)
            #expect(page.text.contains("initial admin"))
            Self.expectNoInlineCode(page.text)
        }

        // Static files: their own types and a long cache; no session needed.
        let anonymous = DashboardBrowser(fixture)
        let script = try await anonymous.get("/static/dashboard.js")
        #expect(script.status == 200)
        #expect(script.headers["Content-Type"]?.hasPrefix("text/javascript") == true)
        #expect(script.headers["Cache-Control"]?.contains("immutable") == true)
        let style = try await anonymous.get("/static/dashboard.css")
        #expect(style.headers["Content-Type"]?.hasPrefix("text/css") == true)
        #expect(try await anonymous.get("/static/manifold.db").status == 404)
        #expect(try await anonymous.get("/static/..%2Fmanifold.db").status == 404)

        // Signing out ends the cookie.
        let builds = try await browser.get("/builds")
        let out = try await browser.post("/sign-out", form: [("csrf", builds.csrf ?? "")])
        #expect(out.status == 303)
        #expect(browser.cookies["__Host-manifold_session"] == nil)
        #expect(try await browser.get("/builds").status == 303)
        await fixture.stop()
    }

    /// The attacks on sign-in: unknown, join and agent credentials; a form from another site (login CSRF); a `next`
    /// that leads elsewhere (open redirect).
    @Test func signInRefusesWrongCredentialsForeignFormsAndForeignRedirects() async throws {
        let fixture = try await CoordinatorFixture.start()
        let agent = try await fixture.joinAgent("agent-1", platforms: ["linux/amd64"])
        for (token, message) in [
            ("mfd_admin_nonsense", "unknown or revoked"), (fixture.initialisation.joinToken, "join token"),
            (agent.secret, "agent&#39;s credential"), ("", "Give an API token"),
        ] {
            let browser = DashboardBrowser(fixture)
            let page = try await browser.signIn(token)
            #expect(page.status == 401, "\(token)")
            #expect(page.text.contains(message), "\(page.text)")
            #expect(browser.cookies["__Host-manifold_session"] == nil)
        }

        // No sign-in cookie (another site's form), or another form's token: refused.
        let browser = DashboardBrowser(fixture)
        let form = try await browser.get("/sign-in")
        let stolen = try #require(form.csrf)
        let other = DashboardBrowser(fixture)
        let foreign = try await other.post("/sign-in", form: [("token", fixture.initialisation.adminToken), ("csrf", stolen)])
        #expect(foreign.status == 403)
        #expect(other.cookies["__Host-manifold_session"] == nil)
        let crossSite = try await browser.post(
            "/sign-in", form: [("token", fixture.initialisation.adminToken), ("csrf", stolen)],
            headers: ["Sec-Fetch-Site": "cross-site"])
        #expect(crossSite.status == 403)

        // Two sign-in tabs in one browser: the first tab's form still works after the second opened.
        let tabs = DashboardBrowser(fixture)
        let firstTab = try await tabs.get("/sign-in")
        _ = try await tabs.get("/sign-in")
        let signedIn = try await tabs.post(
            "/sign-in", form: [("token", fixture.initialisation.adminToken), ("csrf", firstTab.csrf ?? "")])
        #expect(signedIn.status == 303)

        for (next, expected) in [
            ("//evil.example/x", "/builds"), ("https://evil.example/", "/builds"), ("/\\evil.example", "/builds"),
            ("/api/v1/tokens", "/builds"), ("/builds/b_1?x=1", "/builds/b_1?x=1"),
        ] {
            let page = try await DashboardBrowser(fixture).signIn(fixture.initialisation.adminToken, next: next)
            #expect(page.status == 303)
            #expect(page.location == expected, "\(next)")
        }
        await fixture.stop()
    }

    /// Revoking the token ends its sessions on their next request; a session past its expiry, one whose token
    /// expired, and a cookie with a forged signature are all refused.
    @Test func revokedExpiredAndForgedSessionsAreRefused() async throws {
        let fixture = try await CoordinatorFixture.start()
        let viewer = try await Self.scopedToken(fixture, .viewer, nil)
        let browser = DashboardBrowser(fixture)
        #expect(try await browser.signIn(viewer.secret).status == 303)
        #expect(try await browser.get("/builds").status == 200)
        let revoke = try await fixture.call("DELETE", "/api/v1/tokens/\(viewer.id)", token: fixture.initialisation.adminToken)
        #expect(revoke.status == 204)
        let afterRevoke = try await browser.get("/builds")
        #expect(afterRevoke.status == 303)
        #expect(afterRevoke.location?.hasPrefix("/sign-in") == true)
        #expect(browser.cookies["__Host-manifold_session"] == nil)
        #expect(try await browser.signIn(viewer.secret).status == 401)

        // Sessions signed with the coordinator's key: expired, tampered, for a token that does not exist.
        let key = DashboardSessions.deriveKey(from: try fixture.state.loadOrCreateSecretsKey().data)
        let sessions = DashboardSessions(key: key)
        let admin = try #require(
            try await fixture.call("GET", "/api/v1/tokens", token: fixture.initialisation.adminToken)
                .decode([TokenView].self).first { $0.role == .admin })
        let valid = sessions.sign(
            .init(tokenId: admin.id, issuedAt: Date(), expiresAt: Date().addingTimeInterval(600), nonce: "n1"))
        let expired = sessions.sign(
            .init(
                tokenId: admin.id, issuedAt: Date().addingTimeInterval(-7200), expiresAt: Date().addingTimeInterval(-1),
                nonce: "n2"))
        let forged = DashboardSessions(key: SymmetricKey(size: .bits256)).sign(
            .init(tokenId: admin.id, issuedAt: Date(), expiresAt: Date().addingTimeInterval(600), nonce: "n3"))
        let tampered = valid.replacingOccurrences(of: ".n1.", with: ".n9.")
        let later = valid.replacingOccurrences(of: "v1.\(admin.id).", with: "v1.\(admin.id).").replacingOccurrences(
            of: ".\(Int64(Date().addingTimeInterval(600).timeIntervalSince1970)).", with: ".9999999999.")
        for (name, cookie, allowed) in [
            ("valid", valid, true), ("expired", expired, false), ("forged", forged, false), ("tampered", tampered, false),
            ("extended", later, false),
        ] {
            let probe = DashboardBrowser(fixture)
            probe.cookies["__Host-manifold_session"] = cookie
            let page = try await probe.get("/builds")
            #expect((page.status == 200) == allowed, "\(name): \(page.status)")
        }

        // A token that expires ends its session with it (the cookie's own expiry is capped at the token's). Fifteen
        // seconds leave a starved test machine time to sign in first.
        let brief = try await Self.scopedToken(fixture, .viewer, nil, expiresIn: 15)
        let issued = ContinuousClock.now
        let shortLived = DashboardBrowser(fixture)
        let signedIn = try await shortLived.signIn(brief.secret)
        let cookie = try #require(signedIn.headers.values("Set-Cookie").first { $0.hasPrefix("__Host-manifold_session=") })
        let maxAge = Int(DashboardBrowser.Page.capture("Max-Age=([0-9]+)", in: cookie) ?? "") ?? 0
        #expect(maxAge <= 15, "\(cookie)")
        #expect(try await shortLived.get("/builds").status == 200)
        try await Task.sleep(until: issued + .seconds(16))
        shortLived.cookies["__Host-manifold_session"] = try #require(
            DashboardBrowser.Page.capture("__Host-manifold_session=([^;]+)", in: cookie))
        #expect(try await shortLived.get("/builds").status == 303)
        await fixture.stop()
    }

    /// A viewer scoped to team-a sees nothing of team-b's builds on any page or stream, and an admin sees both.
    @Test func aScopedViewerSeesNoOtherTeamsBuildsOnAnyPage() async throws {
        let fixture = try await CoordinatorFixture.start { $0.pollTimeoutSeconds = 1 }
        let teamA = try await Self.scopedToken(fixture, .submitter, ["127.0.0.1/team-a/*"])
        let teamB = try await Self.scopedToken(fixture, .submitter, ["127.0.0.1/team-b/*"])
        let own = try await fixture.submit(teamA.secret, image: "127.0.0.1:1/team-a/app", platforms: ["linux/amd64"])
        let foreign = try await fixture.submit(teamB.secret, image: "127.0.0.1:1/team-b/secret-app", platforms: ["linux/arm64"])
        // An agent is building team-b's job: the agents page must not link to it for team-a.
        let agent = try await fixture.joinAgent("arm-1", platforms: ["linux/arm64"])
        let lease = try #require(try await fixture.poll(agent.secret, platforms: ["linux/arm64"]).decode(PollResponse.self).lease)
        #expect(lease.spec.buildId == foreign.id)

        let viewer = try await Self.scopedToken(fixture, .viewer, ["127.0.0.1/team-a/*"])
        let browser = DashboardBrowser(fixture)
        #expect(try await browser.signIn(viewer.secret).status == 303)
        let list = try await browser.get("/builds")
        #expect(list.text.contains(own.id))
        #expect(!list.text.contains(foreign.id) && !list.text.contains("secret-app"))
        let filtered = try await browser.get("/builds?image=127.0.0.1:1/team-b/secret-app")
        #expect(!filtered.text.contains(foreign.id))
        // Each image links to the list filtered to it.
        let imageLink = try #require(DashboardBrowser.Page.capture(#"<a href="(/builds\?image=[^"]+)""#, in: list.text))
        let ownImage = try await browser.get(imageLink)
        #expect(ownImage.text.contains(own.id))
        #expect(ownImage.text.contains(#"value="127.0.0.1:1/team-a/app""#))
        for path in [
            "/builds/\(foreign.id)", "/builds/\(foreign.id)/logs?platform=linux/arm64",
            "/builds/\(foreign.id)/logs/raw?platform=linux/arm64", "/live/builds/\(foreign.id)/events",
            "/live/builds/\(foreign.id)/log?platform=linux/arm64",
        ] {
            let page = try await browser.get(path)
            #expect(page.status == 404, "\(path): \(page.status)")
            #expect(!page.text.contains("secret-app"), "\(path)")
        }
        #expect(try await browser.get("/builds/\(own.id)").status == 200)
        let agents = try await browser.get("/agents")
        #expect(agents.text.contains("arm-1"))
        #expect(!agents.text.contains("/builds/\(foreign.id)"))

        let admin = DashboardBrowser(fixture)
        try await admin.signIn(fixture.initialisation.adminToken)
        #expect(try await admin.get("/agents").text.contains("/builds/\(foreign.id)"))
        #expect(try await admin.get("/builds").text.contains(foreign.id))
        await fixture.stop()
    }

    /// The attacks on actions: a viewer posts cancel, retry or an agent change; a submitter changes an agent; a form
    /// without the session's CSRF token, with another session's, or sent cross-site. All 403, nothing changes; the
    /// right role with the right token succeeds.
    @Test func actionsNeedTheRoleAndTheSessionsCSRFToken() async throws {
        let fixture = try await CoordinatorFixture.start { $0.pollTimeoutSeconds = 1 }
        let submitter = try await Self.scopedToken(fixture, .submitter, nil)
        let build = try await fixture.submit(submitter.secret, image: "127.0.0.1:1/team/app", platforms: ["linux/amd64"])
        let agent = try await fixture.joinAgent("amd-1", platforms: ["linux/amd64"])

        let viewer = DashboardBrowser(fixture)
        try await viewer.signIn(try await Self.scopedToken(fixture, .viewer, nil).secret)
        let viewerPage = try await viewer.get("/builds/\(build.id)")
        #expect(viewerPage.status == 200)
        #expect(!viewerPage.text.contains("Cancel build") && !viewerPage.text.contains(">Retry<"))
        let viewerCSRF = try #require(viewerPage.csrf)
        #expect(try await viewer.post("/builds/\(build.id)/cancel", form: [("csrf", viewerCSRF)]).status == 403)
        #expect(
            try await viewer.post("/builds/\(build.id)/retry", form: [("csrf", viewerCSRF), ("platform", "linux/amd64")]).status
                == 403)
        #expect(
            try await viewer.post("/agents/\(agent.id)/state", form: [("csrf", viewerCSRF), ("state", "disabled")]).status == 403)

        let browser = DashboardBrowser(fixture)
        try await browser.signIn(submitter.secret)
        let page = try await browser.get("/builds/\(build.id)")
        #expect(page.text.contains("Cancel build"))
        let csrf = try #require(page.csrf)
        #expect(try await browser.post("/agents/\(agent.id)/state", form: [("csrf", csrf), ("state", "disabled")]).status == 403)
        for (form, headers) in [
            ([], [:]), ([("csrf", "")], [:]), ([("csrf", "forged")], [:]), ([("csrf", viewerCSRF)], [:]),
            ([("csrf", csrf)], ["Sec-Fetch-Site": "cross-site"]),
        ] as [([(String, String)], [String: String])] {
            let refused = try await browser.post("/builds/\(build.id)/cancel", form: form, headers: headers)
            #expect(refused.status == 403, "\(form) \(headers)")
            #expect(refused.text.contains("CSRF") || refused.text.contains("other sites"), "\(refused.text)")
        }
        // Without a session at all: to the sign-in page, nothing done.
        let stranger = DashboardBrowser(fixture)
        #expect(try await stranger.post("/builds/\(build.id)/cancel", form: [("csrf", csrf)]).status == 303)
        #expect(try await fixture.build(build.id, token: submitter.secret).state == .queued)

        let cancelled = try await browser.post("/builds/\(build.id)/cancel", form: [("csrf", csrf)])
        #expect(cancelled.status == 303)
        #expect(cancelled.location == "/builds/\(build.id)")
        #expect(try await fixture.build(build.id, token: submitter.secret).state == .cancelled)

        // Retry a failed platform: queued again.
        let failing = try await fixture.submit(
            submitter.secret, image: "127.0.0.1:1/team/app", platforms: ["linux/amd64"], maxAttempts: 1)
        let lease = try #require(try await fixture.poll(agent.secret, platforms: ["linux/amd64"]).decode(PollResponse.self).lease)
        #expect(lease.spec.buildId == failing.id)
        _ = try await fixture.call(
            "POST", "/api/v1/agent/complete", token: agent.secret,
            json: CompleteRequest(jobId: lease.jobId, epoch: lease.epoch, outcome: .failed, exitCode: 1, reason: "broken"))
        #expect(try await fixture.build(failing.id, token: submitter.secret).state == .failed)
        let failedPage = try await browser.get("/builds/\(failing.id)")
        #expect(failedPage.text.contains(#"id="retry-linux-amd64""#))
        #expect(!(try await browser.get("/builds/\(build.id)")).text.contains(#"id="retry-"#))
        let retried = try await browser.post("/builds/\(failing.id)/retry", form: [("csrf", csrf), ("platform", "linux/amd64")])
        #expect(retried.status == 303, "\(retried.text)")
        #expect(try await fixture.build(failing.id, token: submitter.secret).jobs[0].state == .queued)
        // A platform the build does not have: a page naming the problem.
        let wrong = try await browser.post("/builds/\(failing.id)/retry", form: [("csrf", csrf), ("platform", "linux/s390x")])
        #expect(wrong.status == 400)
        #expect(wrong.text.contains("linux/s390x"))
        // Retrying a cancelled build is refused with the store's reason.
        let refused = try await browser.post("/builds/\(build.id)/retry", form: [("csrf", csrf), ("platform", "linux/amd64")])
        #expect(refused.status == 409)
        #expect(refused.text.contains("cancelled"))

        // The admin drains and disables an agent from the agents page.
        let admin = DashboardBrowser(fixture)
        try await admin.signIn(fixture.initialisation.adminToken)
        let agents = try await admin.get("/agents")
        #expect(agents.text.contains(">Drain<"))
        let drained = try await admin.post(
            "/agents/\(agent.id)/state", form: [("csrf", agents.csrf ?? ""), ("state", "draining")])
        #expect(drained.status == 303)
        let listed = try await fixture.call("GET", "/api/v1/agents", token: fixture.initialisation.adminToken).decode(
            [AgentView].self)
        #expect(listed.first { $0.id == agent.id }?.state == .draining)
        #expect(try await admin.get("/agents").text.contains(">Activate<"))
        await fixture.stop()
    }

    /// Hostile text everywhere a user or agent can put it — token (submitter) names, agent names and labels, failure
    /// reasons, log lines with ANSI escapes — is shown as text, never as markup.
    @Test func hostileNamesLabelsReasonsAndLogsAreEscaped() async throws {
        let fixture = try await CoordinatorFixture.start { $0.pollTimeoutSeconds = 1 }
        let script = "<script>alert(1)</script>"
        let submitter = try await Self.scopedToken(fixture, .submitter, nil, name: "\(script)\"'><img src=x onerror=alert(2)>")
        let build = try await fixture.submit(
            submitter.secret, image: "127.0.0.1:1/team/app", platforms: ["linux/amd64"], maxAttempts: 1)
        let agent = try await fixture.joinAgent("agent-x", platforms: ["linux/amd64"], labels: ["zone": script])
        let lease = try #require(
            try await fixture.poll(agent.secret, platforms: ["linux/amd64"], labels: ["zone": script])
                .decode(PollResponse.self).lease)
        let log = "step 1\n\u{1B}[31mred \(script)\u{1B}[0m\n\u{1B}]0;title\u{07}done\r\n"
        #expect(
            try await fixture.call(
                "PUT", "/api/v1/agent/jobs/\(lease.jobId)/logs?epoch=\(lease.epoch)&offset=0", token: agent.secret,
                body: Data(log.utf8)
            ).status == 200)
        let failed = try await fixture.call(
            "POST", "/api/v1/agent/complete", token: agent.secret,
            json: CompleteRequest(
                jobId: lease.jobId, epoch: lease.epoch, outcome: .failed, exitCode: 1, reason: "\(script) failed"))
        #expect(failed.status == 200)

        let browser = DashboardBrowser(fixture)
        try await browser.signIn(fixture.initialisation.adminToken)
        for path in [
            "/builds", "/builds/\(build.id)", "/builds/\(build.id)/logs?platform=linux/amd64", "/agents",
        ] {
            let page = try await browser.get(path)
            #expect(page.status == 200, "\(path)")
            #expect(!page.text.contains("<script>alert") && !page.text.contains("<img src=x"), "\(path): \(page.text)")
            #expect(page.text.contains("&lt;script&gt;alert(1)&lt;/script&gt;"), "\(path)")
            #expect(!page.text.contains("\u{1B}"), "\(path)")
            Self.expectNoInlineCode(page.text)
        }
        let logPage = try await browser.get("/builds/\(build.id)/logs?platform=linux/amd64")
        #expect(
            logPage.text.contains(#"step 1\#n<span class="ansi-fg1">red &lt;script&gt;alert(1)&lt;/script&gt;</span>\#ndone\#n"#),
            "\(logPage.text)")
        // The raw download is the stored bytes, as a download that browsers do not sniff.
        let raw = try await browser.get("/builds/\(build.id)/logs/raw?platform=linux/amd64&attempt=1")
        #expect(raw.text == log)
        #expect(raw.headers["Content-Disposition"]?.hasPrefix("attachment;") == true)
        #expect(raw.headers["Content-Type"] == "text/plain; charset=utf-8")
        #expect(raw.headers["X-Content-Type-Options"] == "nosniff")
        await fixture.stop()
    }

    /// A log far over the page's window: the page shows its last 256 KiB, links to the bytes before, and follows it
    /// live only while the attempt runs; the follow stream and the event stream deliver what comes next.
    @Test func longLogsShowTheirTailWithEarlierPagesAndStreamsResume() async throws {
        let fixture = try await CoordinatorFixture.start { $0.pollTimeoutSeconds = 1 }
        let submitter = try await Self.scopedToken(fixture, .submitter, nil)
        let build = try await fixture.submit(submitter.secret, image: "127.0.0.1:1/team/app", platforms: ["linux/amd64"])
        let agent = try await fixture.joinAgent("agent-1", platforms: ["linux/amd64"])
        let lease = try #require(try await fixture.poll(agent.secret, platforms: ["linux/amd64"]).decode(PollResponse.self).lease)
        let line = String(repeating: "x", count: 99) + "\n"
        let body = (0..<3000).map { "\(String(format: "%05d", $0)) \(line)" }.joined()
        var offset = 0
        for piece in stride(from: 0, to: body.utf8.count, by: 1 << 20) {
            let data = Data(body.utf8).subdata(in: piece..<min(piece + (1 << 20), body.utf8.count))
            let reply = try await fixture.call(
                "PUT", "/api/v1/agent/jobs/\(lease.jobId)/logs?epoch=\(lease.epoch)&offset=\(offset)", token: agent.secret,
                body: data)
            #expect(reply.status == 200)
            offset += data.count
        }
        let browser = DashboardBrowser(fixture)
        try await browser.signIn(submitter.secret)
        let page = try await browser.get("/builds/\(build.id)/logs?platform=linux/amd64")
        #expect(page.status == 200)
        #expect(page.text.contains("02999 xxx"))
        #expect(!page.text.contains("00000 xxx"))
        let earlier = try #require(DashboardBrowser.Page.capture(#"href="([^"]+)" id="load-earlier""#, in: page.text))
        let before = try await browser.get(earlier.replacingOccurrences(of: "&amp;", with: "&"))
        #expect(before.status == 200)
        #expect(before.text.contains("00000 xxx"))
        let follow = try #require(DashboardBrowser.Page.capture(#"data-follow="([^"]+)""#, in: page.text))
            .replacingOccurrences(of: "&amp;", with: "&")
        #expect(follow.contains("offset=\(offset)"))

        // The build page's event stream starts after what the page showed; EventSource's Last-Event-ID resumes it.
        let buildPage = try await browser.get("/builds/\(build.id)")
        let events = try #require(DashboardBrowser.Page.capture(#"data-events="([^"]+)""#, in: buildPage.text))
        let after = Int64(events.split(separator: "=").last ?? "") ?? -1
        #expect(after > 0)
        #expect(
            try await fixture.call(
                "POST", "/api/v1/agent/heartbeat", token: agent.secret,
                json: HeartbeatRequest(jobId: lease.jobId, epoch: lease.epoch, phase: "pushing")
            ).status == 200)
        _ = try await fixture.call(
            "POST", "/api/v1/agent/complete", token: agent.secret,
            json: CompleteRequest(jobId: lease.jobId, epoch: lease.epoch, outcome: .failed, exitCode: 1, reason: "broken"))
        // The build may retry (3 attempts): cancel it so it is final and the stream ends.
        let cancelForm = try await browser.get("/builds/\(build.id)")
        _ = try await browser.post("/builds/\(build.id)/cancel", form: [("csrf", cancelForm.csrf ?? "")])
        let stream = try await browser.get(events)
        #expect(stream.status == 200)
        #expect(stream.headers["Content-Type"] == "text/event-stream")
        #expect(stream.text.contains("event: job.phase") && stream.text.contains("event: build.cancelled"), "\(stream.text)")
        let lastId = try #require(DashboardBrowser.Page.capture("(?s).*id: ([0-9]+)", in: stream.text))
        // Nothing after the last event of a final build: 204, so EventSource stops reconnecting.
        #expect(try await browser.get(events, headers: ["Last-Event-ID": lastId]).status == 204)
        // The finished attempt's log follow ends after the bytes from its offset.
        let tail = try await browser.get(follow)
        #expect(tail.status == 200 && tail.text.isEmpty)
        await fixture.stop()
    }

    /// The pages' live streams take the token's stream slots like the API's, signal changes to the lists, and end
    /// when the token is revoked.
    @Test func liveStreamsAreCappedPerTokenSignalChangesAndEndWithTheToken() async throws {
        let fixture = try await CoordinatorFixture.start { $0.maxStreamsPerToken = 3 }
        let submitter = try await Self.scopedToken(fixture, .submitter, nil)
        let build = try await fixture.submit(submitter.secret, image: "127.0.0.1:1/team/app", platforms: ["linux/amd64"])
        let viewer = try await Self.scopedToken(fixture, .viewer, nil)
        let browser = DashboardBrowser(fixture)
        try await browser.signIn(viewer.secret)
        let cookie = "__Host-manifold_session=\(try #require(browser.cookies["__Host-manifold_session"]))"
        func open(_ path: String) async throws -> HTTPStreamingResponse {
            var request = HTTPRequest(
                method: "GET", url: URL(string: path, relativeTo: fixture.baseURL)!.absoluteURL, timeout: .seconds(120))
            request.headers.replaceOrAdd("Cookie", cookie)
            return try await browser.client.stream(request)
        }
        let changes = try await open("/live/changes")
        #expect(changes.status == 200)
        #expect(changes.headers["Content-Type"] == "text/event-stream")
        let events = try await open("/live/builds/\(build.id)/events")
        #expect(events.status == 200)
        let log = try await open("/live/builds/\(build.id)/log?platform=linux/amd64")
        #expect(log.status == 200)
        let fourth = try await browser.get("/live/builds/\(build.id)/events")
        #expect(fourth.status == 429)
        #expect(fourth.text.contains("max_streams_per_token"))

        // A new build signals the lists.
        let received = Mutex("")
        let reader = Task {
            do {
                for try await chunk in changes.body { received.withLock { $0 += String(decoding: chunk, as: UTF8.self) } }
            } catch {}
            received.withLock { $0 += "<end>" }
        }
        let watches = [AbuseLimitTests.StreamWatch.start(events), AbuseLimitTests.StreamWatch.start(log)]
        _ = try await fixture.submit(submitter.secret, image: "127.0.0.1:1/team/other", platforms: ["linux/amd64"])
        let deadline = ContinuousClock.now + .seconds(20)
        while !received.withLock({ $0.contains("event: change") }), ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(50))
        }
        #expect(received.withLock { $0.contains("event: change\ndata: {}\n\n") })

        // Revoking the token ends every stream of its sessions.
        #expect(
            try await fixture.call("DELETE", "/api/v1/tokens/\(viewer.id)", token: fixture.initialisation.adminToken).status
                == 204)
        #expect(await watches[0].waitForEnd(within: .seconds(20)), "the event stream outlived its token")
        #expect(await watches[1].waitForEnd(within: .seconds(20)), "the log follow outlived its token")
        let ended = ContinuousClock.now + .seconds(20)
        while !received.withLock({ $0.hasSuffix("<end>") }), ContinuousClock.now < ended {
            try await Task.sleep(for: .milliseconds(50))
        }
        #expect(received.withLock { $0.hasSuffix("<end>") }, "the change stream outlived its token")
        reader.cancel()
        await fixture.stop()
    }

    /// Templates never write a value unescaped, and pages hold no inline script, style or event handler.
    @Test func templatesEscapeEverythingAndHoldNoInlineCode() throws {
        for (name, text) in DashboardTemplates.all {
            #expect(!text.contains("{{{") && !text.contains("{{&"), "\(name)")
            Self.expectNoInlineCode(text)
        }
        #expect(
            DashboardFormat.plainText(Data("a\u{1B}[1;31mb\u{1B}[0m\u{1B}]8;;http://x\u{1B}\\c\u{07}\u{8F}d\te\r\n".utf8))
                == "abcd\te\n")
        // Colours: the 16 basic ones and bold become classes; 256 colours and other sequences are dropped.
        let styled = DashboardFormat.logSegments(
            Data(
                "plain \u{1B}[1;32mgreen bold\u{1B}[22m green\u{1B}[0m \u{1B}[38;5;196m256\u{1B}[39m \u{1B}[91mbright\u{1B}[m end\u{1B}[2K"
                    .utf8))
        #expect(
            styled == [
                .init(segmentText: "plain ", segmentClass: nil),
                .init(segmentText: "green bold", segmentClass: "ansi-fg2 ansi-b"),
                .init(segmentText: " green", segmentClass: "ansi-fg2"),
                .init(segmentText: " 256 ", segmentClass: nil),
                .init(segmentText: "bright", segmentClass: "ansi-fg9"),
                .init(segmentText: " end", segmentClass: nil),
            ])
        #expect(CoordinatorAPI.safeNext("/agents") == "/agents")
        #expect(CoordinatorAPI.safeNext("/builds\n/x") == "/builds")
    }

    static func expectNoInlineCode(_ html: String, sourceLocation: SourceLocation = #_sourceLocation) {
        #expect(!html.contains("<style"), sourceLocation: sourceLocation)
        #expect(!html.contains(" style="), sourceLocation: sourceLocation)
        #expect(
            html.components(separatedBy: "<script").count - 1 == html.components(separatedBy: "<script src=\"/static/").count - 1,
            sourceLocation: sourceLocation)
        #expect(html.range(of: #"<[^>]*\son[a-z]+\s*="#, options: .regularExpression) == nil, sourceLocation: sourceLocation)
    }
}
