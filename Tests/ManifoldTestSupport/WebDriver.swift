import Foundation
import ManifoldHTTP

/// A real browser for end-to-end tests: Debian's `chromium`, headless, driven through `chromedriver` with the W3C
/// WebDriver protocol (JSON over HTTP on loopback). Only what the dashboard's tests need: navigate, find elements,
/// click, type, read text and attributes, run a script, take screenshots.
///
/// ```swift
/// let browser = try await WebDriver.start(logDirectory: scratch.url)
/// try await browser.navigate(to: "https://127.0.0.1:7443/")
/// try await browser.type(try await browser.find("#token"), "mfd_viewer_…")
/// try await browser.quit()
/// ```
public final class WebDriver: Sendable {
    public let process: ManagedProcess
    let client: HTTPClient
    let base: URL
    public let sessionId: String

    /// Starts `chromedriver` on a free loopback port and a headless Chromium session that accepts the test CA's
    /// certificates; `javascript: false` starts one with scripts disabled, to check pages work without them.
    public static func start(logDirectory: URL, name: String = "chromedriver", javascript: Bool = true) async throws -> WebDriver
    {
        let chromedriver = "/usr/bin/chromedriver", chromium = "/usr/bin/chromium"
        for path in [chromedriver, chromium] where !FileManager.default.isExecutableFile(atPath: path) {
            throw TestEnvironmentError(
                "\(path) is missing: install Debian's chromium and chromium-driver (deploy/testenv/install-deps.sh)")
        }
        let port = try Loopback.freePort()
        let process = try ManagedProcess(
            name: name, executable: chromedriver, arguments: ["--port=\(port)", "--allowed-ips=127.0.0.1"],
            logDirectory: logDirectory)
        try Loopback.waitUntilListening(port: port, process: process, timeout: 60)
        let client = HTTPClient(configuration: HTTPClientConfiguration(requestTimeout: .seconds(180)))
        let base = URL(string: "http://127.0.0.1:\(port)")!
        var options: [String: Any] = [
            "binary": chromium,
            "args": [
                "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1280,1000",
                "--no-first-run", "--no-default-browser-check",
                "--user-data-dir=\(logDirectory.appendingPathComponent("\(name)-profile").path)",
            ],
        ]
        if !javascript { options["prefs"] = ["profile.managed_default_content_settings.javascript": 2] }
        let capabilities: [String: Any] = [
            "capabilities": [
                "alwaysMatch": ["browserName": "chrome", "acceptInsecureCerts": true, "goog:chromeOptions": options]
            ]
        ]
        let answer = try await call(client, "POST", base.appendingPathComponent("session"), capabilities)
        guard let value = answer as? [String: Any], let session = value["sessionId"] as? String else {
            process.stop()
            throw TestEnvironmentError("chromedriver started no session: \(answer)\n\(process.output())")
        }
        return WebDriver(process: process, client: client, base: base, sessionId: session)
    }

    init(process: ManagedProcess, client: HTTPClient, base: URL, sessionId: String) {
        self.process = process
        self.client = client
        self.base = base
        self.sessionId = sessionId
    }

    deinit {
        client.shutdown()
        process.stop()
    }

    /// Ends the session (Chromium exits) and stops chromedriver.
    public func quit() async {
        _ = try? await command("DELETE", "")
        process.stop()
    }

    public func navigate(to url: String) async throws {
        _ = try await command("POST", "/url", ["url": url])
    }

    public func currentURL() async throws -> String {
        try await command("GET", "/url") as? String ?? ""
    }

    /// Resizes the window, e.g. to a phone's 390 × 844.
    public func setWindowSize(width: Int, height: Int) async throws {
        _ = try await command("POST", "/window/rect", ["width": width, "height": height])
    }

    /// Asks the page to render as under `prefers-color-scheme: dark` (or light), through Chromium's DevTools protocol.
    public func emulateColorScheme(_ scheme: String) async throws {
        _ = try await command(
            "POST", "/goog/cdp/execute",
            [
                "cmd": "Emulation.setEmulatedMedia",
                "params": ["features": [["name": "prefers-color-scheme", "value": scheme]]],
            ])
    }

    public func title() async throws -> String {
        try await command("GET", "/title") as? String ?? ""
    }

    public func source() async throws -> String {
        try await command("GET", "/source") as? String ?? ""
    }

    /// The first element `css` selects; throws when there is none.
    public func find(_ css: String) async throws -> String {
        let value = try await command("POST", "/element", ["using": "css selector", "value": css])
        guard let element = (value as? [String: Any])?.values.first as? String else {
            throw TestEnvironmentError("no element \(css): \(value)")
        }
        return element
    }

    /// Every element `css` selects (none: empty).
    public func findAll(_ css: String) async throws -> [String] {
        let value = try await command("POST", "/elements", ["using": "css selector", "value": css])
        return (value as? [[String: Any]] ?? []).compactMap { $0.values.first as? String }
    }

    public func text(_ element: String) async throws -> String {
        try await command("GET", "/element/\(element)/text") as? String ?? ""
    }

    public func attribute(_ element: String, _ name: String) async throws -> String? {
        try await command("GET", "/element/\(element)/attribute/\(name)") as? String
    }

    public func click(_ element: String) async throws {
        _ = try await command("POST", "/element/\(element)/click", [:])
    }

    public func type(_ element: String, _ text: String) async throws {
        _ = try await command("POST", "/element/\(element)/value", ["text": text])
    }

    /// Runs `script` in the page (its `return` value as JSON text, so callers decode what they expect).
    public func execute(_ script: String, _ arguments: [String] = []) async throws -> String {
        let value = try await command("POST", "/execute/sync", ["script": script, "args": arguments])
        if value is NSNull { return "null" }
        if let string = value as? String { return string }
        let data = try JSONSerialization.data(withJSONObject: value, options: [.fragmentsAllowed, .sortedKeys])
        return String(decoding: data, as: UTF8.self)
    }

    /// Saves a PNG of the viewport.
    public func screenshot(to file: URL) async throws {
        guard let base64 = try await command("GET", "/screenshot") as? String, let data = Data(base64Encoded: base64) else {
            throw TestEnvironmentError("chromedriver returned no screenshot")
        }
        try FileManager.default.createDirectory(at: file.deletingLastPathComponent(), withIntermediateDirectories: true)
        try data.write(to: file)
    }

    /// Polls `condition` until it holds or `timeout` passes (generous by default: a starved test machine delays
    /// both the browser and the coordinator).
    public func wait(
        _ description: String, timeout: Duration = .seconds(90), _ condition: () async throws -> Bool
    ) async throws {
        let deadline = ContinuousClock.now + timeout
        var lastError: (any Error)?
        while ContinuousClock.now < deadline {
            do {
                if try await condition() { return }
            } catch {
                lastError = error
            }
            try await Task.sleep(for: .milliseconds(250))
        }
        let page = (try? await source()).map { String($0.prefix(4000)) } ?? "(no page source)"
        throw TestEnvironmentError(
            "timed out waiting for \(description)\(lastError.map { " (last error: \($0))" } ?? "")\npage: \(page)")
    }

    func command(_ method: String, _ path: String, _ body: [String: Any]? = nil) async throws -> Any {
        try await Self.call(
            client, method, URL(string: base.absoluteString + "/session/\(sessionId)\(path)")!, body)
    }

    static func call(_ client: HTTPClient, _ method: String, _ url: URL, _ body: [String: Any]?) async throws -> Any {
        var request = HTTPRequest(method: method, url: url)
        if let body {
            request.body = .bytes(try JSONSerialization.data(withJSONObject: body))
            request.headers.replaceOrAdd("Content-Type", "application/json")
        }
        let response = try await client.execute(request)
        let json = try? JSONSerialization.jsonObject(with: response.body, options: [.fragmentsAllowed])
        let value = (json as? [String: Any])?["value"] ?? NSNull()
        guard (200..<300).contains(response.status) else {
            let error = (value as? [String: Any]).map { "\($0["error"] ?? "") \($0["message"] ?? "")" } ?? ""
            throw WebDriverError(
                status: response.status, message: error.isEmpty ? String(decoding: response.body, as: UTF8.self) : error)
        }
        return value
    }
}

/// A WebDriver command the browser refused (no such element, stale element, …).
public struct WebDriverError: Error, CustomStringConvertible {
    public var status: Int
    public var message: String
    public var description: String { "WebDriver \(status): \(message.prefix(600))" }
}
