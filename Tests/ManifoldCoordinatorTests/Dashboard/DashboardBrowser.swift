import Foundation
import ManifoldAPI
import ManifoldHTTP
import ManifoldTestSupport

@testable import ManifoldCoordinator

/// A minimal browser for the dashboard's handler tests: it keeps cookies, sends forms, never follows redirects (the
/// tests look at each answer), and reads the CSRF token out of a page.
final class DashboardBrowser: Sendable {
    let fixture: CoordinatorFixture
    let client: HTTPClient
    private let jar = Jar()

    final class Jar: @unchecked Sendable {
        // Only touched from the test's own task, one request at a time.
        var cookies: [String: String] = [:]
    }

    struct Page {
        var status: Int
        var headers: HTTPHeaders
        var text: String
        var location: String? { headers["Location"] }
        /// The first CSRF token of the page's forms.
        var csrf: String? { Self.capture(#"name="csrf" value="([^"]+)""#, in: text) }

        static func capture(_ pattern: String, in text: String) -> String? {
            guard let expression = try? NSRegularExpression(pattern: pattern),
                let match = expression.firstMatch(in: text, range: NSRange(text.startIndex..., in: text)),
                let range = Range(match.range(at: 1), in: text)
            else { return nil }
            return String(text[range])
        }
    }

    init(_ fixture: CoordinatorFixture) {
        self.fixture = fixture
        client = HTTPClient(
            configuration: HTTPClientConfiguration(
                tls: TLSConfiguration(caFile: fixture.state.caCertificate.path), maxRedirects: 0))
    }

    deinit { client.shutdown() }

    var cookies: [String: String] {
        get { jar.cookies }
        set { jar.cookies = newValue }
    }

    func get(_ path: String, headers: [String: String] = [:]) async throws -> Page {
        try await send("GET", path, body: nil, headers: headers)
    }

    func post(_ path: String, form: [(String, String)], headers: [String: String] = [:]) async throws -> Page {
        let body = form.map { name, value in
            "\(name)=\(value.addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? "")"
        }.joined(separator: "&")
        return try await send(
            "POST", path, body: Data(body.utf8),
            headers: headers.merging(["Content-Type": "application/x-www-form-urlencoded"]) { $1 })
    }

    /// Signs in with `token` as a user would: the sign-in page, then its form.
    @discardableResult
    func signIn(_ token: String, next: String? = nil) async throws -> Page {
        let form = try await get(
            "/sign-in" + (next.map { "?next=\($0.addingPercentEncoding(withAllowedCharacters: .alphanumerics)!)" } ?? ""))
        return try await post("/sign-in", form: [("token", token), ("csrf", form.csrf ?? ""), ("next", next ?? "")])
    }

    func send(_ method: String, _ path: String, body: Data?, headers: [String: String]) async throws -> Page {
        var request = HTTPRequest(method: method, url: URL(string: path, relativeTo: fixture.baseURL)!.absoluteURL)
        for (name, value) in headers { request.headers.replaceOrAdd(name, value) }
        if !cookies.isEmpty {
            request.headers.replaceOrAdd(
                "Cookie", cookies.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: "; "))
        }
        if let body { request.body = .bytes(body) }
        let response = try await client.execute(request)
        for header in response.headers.values("Set-Cookie") {
            let pair = header.split(separator: ";")[0]
            guard let equals = pair.firstIndex(of: "=") else { continue }
            let name = String(pair[..<equals]), value = String(pair[pair.index(after: equals)...])
            if value.isEmpty || header.contains("Max-Age=0") { cookies[name] = nil } else { cookies[name] = value }
        }
        return Page(status: response.status, headers: response.headers, text: String(decoding: response.body, as: UTF8.self))
    }
}
