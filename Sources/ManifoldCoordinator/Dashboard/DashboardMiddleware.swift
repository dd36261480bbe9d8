import Foundation
import HTTPTypes
import Hummingbird
import ManifoldAPI
import ManifoldStore

extension CoordinatorAPI {
    /// Whether the dashboard answers `path` (with its session cookie) rather than the API (with bearer tokens).
    static func isDashboardPath(_ path: String) -> Bool {
        if path == "/" || path == "/sign-in" || path == "/sign-out" || path == "/favicon.ico" { return true }
        for prefix in ["/builds", "/agents"] where path == prefix || path.hasPrefix(prefix + "/") { return true }
        return path.hasPrefix("/live/") || path.hasPrefix("/static/")
    }
}

/// The headers every dashboard answer carries: a Content-Security-Policy that allows only this origin's own script
/// and stylesheet (no inline script, style or handler, no framing, forms post only here), no MIME sniffing, no
/// referrer, and no caching of pages that show private data.
enum DashboardHeaders {
    static let contentSecurityPolicy =
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
        + "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"

    static func apply(to headers: inout HTTPFields) {
        headers[.contentSecurityPolicy] = contentSecurityPolicy
        headers[HTTPField.Name("X-Content-Type-Options")!] = "nosniff"
        headers[HTTPField.Name("X-Frame-Options")!] = "DENY"
        headers[HTTPField.Name("Referrer-Policy")!] = "no-referrer"
        headers[HTTPField.Name("Cross-Origin-Opener-Policy")!] = "same-origin"
        if headers[.cacheControl] == nil { headers[.cacheControl] = "no-store" }
    }
}

/// Resolves the session cookie into the same principal the API's bearer token gives (the token is looked up by id on
/// every request, so a revoked or expired token ends the session), maps errors to HTML pages (or a redirect to the
/// sign-in page), and adds ``DashboardHeaders`` to every answer.
struct DashboardMiddleware: RouterMiddleware {
    typealias Context = CoordinatorContext
    let api: CoordinatorAPI

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response
    {
        var context = context
        var clearCookie = false
        var response: Response
        do {
            if let value = DashboardSessions.cookie(DashboardSessions.cookieName, in: request.headers[values: .cookie]) {
                // A revoked, unknown or expired token ends the session; a store that cannot be read is an error
                // page, not a sign-out.
                let session = api.sessions.verify(value, now: api.store.currentTime())
                var grant: TokenGrant? = nil
                if let session {
                    do {
                        grant = try await api.store.grant(tokenId: session.tokenId)
                    } catch StoreError.unauthenticated {
                        grant = nil
                    } catch {
                        throw APIError(
                            .serviceUnavailable, code: "NOT_READY", "the coordinator cannot read its database now; retry")
                    }
                }
                if let session, let grant, grant.role != .join {
                    context.principal = .user(grant)
                    context.dashboardSession = session
                    context.logger[metadataKey: "principal"] = "\(grant.role.rawValue):\(grant.name) (dashboard)"
                } else {
                    clearCookie = true
                }
            }
            response = try await ErrorMiddleware<Context>().handle(request, context: context, next: next)
        } catch let error as APIError {
            response = api.dashboardError(error, request: request, context: context)
        }
        if clearCookie, !response.headers[values: .setCookie].contains(where: { $0.hasPrefix(DashboardSessions.cookieName) }) {
            response.headers.append(
                HTTPField(
                    name: .setCookie, value: DashboardSessions.setCookie(name: DashboardSessions.cookieName, value: "", maxAge: 0)
                ))
        }
        DashboardHeaders.apply(to: &response.headers)
        return response
    }
}

extension CoordinatorAPI {
    /// An error as the dashboard shows it: signed-out pages go to the sign-in page (and come back afterwards), live
    /// streams get a plain status, everything else an HTML page naming the problem.
    func dashboardError(_ error: APIError, request: Request, context: CoordinatorContext) -> Response {
        let path = request.uri.path
        if path.hasPrefix("/live/") || path.hasPrefix("/static/") {
            var response = Response(
                status: error.status, headers: [.contentType: "text/plain; charset=utf-8"],
                body: ResponseBody(byteBuffer: ByteBuffer(string: error.message + "\n")))
            response.headers.append(contentsOf: error.headers)
            return response
        }
        if error.status == .unauthorized {
            let next = request.method == .get ? (request.uri.path + (request.uri.query.map { "?" + $0 } ?? "")) : "/builds"
            if request.method == .get, request.headers[HTTPField.Name("Sec-Fetch-Site")!] == "cross-site",
                request.headers[HTTPField.Name("Sec-Fetch-Mode")!] == "navigate"
            {
                struct Refresh { var target: String }
                return Self.html(DashboardTemplates.render(Refresh(target: Self.safeNext(next)), "refresh"))
            }
            var location = "/sign-in"
            if next != "/builds", next != "/" {
                location += "?next=" + (next.addingPercentEncoding(withAllowedCharacters: Self.queryValueCharacters) ?? "")
            }
            return Response(status: .seeOther, headers: [.location: location])
        }
        let heading: String
        switch error.status.code {
        case 403: heading = "Not allowed"
        case 404: heading = "Not found"
        case 409: heading = "Not possible now"
        case 429: heading = "Too many requests"
        case 400, 422: heading = "Not accepted"
        default: heading = "Something went wrong"
        }
        let back = path.hasPrefix("/agents") ? "/agents" : (path.hasPrefix("/builds/") ? Self.buildPath(of: path) : "/builds")
        let page = DashboardPage.ErrorPage(
            base: basePage(context), status: "\(error.status.code)", heading: heading, message: error.message, back: back)
        var response = Self.html(DashboardTemplates.render(page, "error"), status: error.status)
        response.headers.append(contentsOf: error.headers)
        return response
    }

    /// `/builds/ID` of a path below it.
    static func buildPath(of path: String) -> String {
        let parts = path.split(separator: "/")
        return parts.count >= 2 ? "/builds/\(parts[1])" : "/builds"
    }

    static func html(_ text: String, status: HTTPResponse.Status = .ok) -> Response {
        Response(
            status: status, headers: [.contentType: "text/html; charset=utf-8"],
            body: ResponseBody(byteBuffer: ByteBuffer(string: text)))
    }

    /// Characters left as they are in a query value.
    static let queryValueCharacters: CharacterSet = {
        var set = CharacterSet.urlQueryAllowed
        set.remove(charactersIn: "&=+?#")
        return set
    }()

    /// Characters left as they are in one path segment.
    static let pathSegmentCharacters: CharacterSet = {
        var set = CharacterSet.urlPathAllowed
        set.remove(charactersIn: "/?#;")
        return set
    }()

    static func query(_ items: [(String, String?)]) -> String {
        let parts = items.compactMap { name, value in
            value.map { "\(name)=\($0.addingPercentEncoding(withAllowedCharacters: queryValueCharacters) ?? "")" }
        }
        return parts.isEmpty ? "" : "?" + parts.joined(separator: "&")
    }

    /// The fields of an `application/x-www-form-urlencoded` body of at most 64 KiB.
    static func formFields(_ request: Request) async throws -> [String: String] {
        let buffer: ByteBuffer
        do { buffer = try await request.body.collect(upTo: 64 << 10) } catch {
            throw APIError(.contentTooLarge, code: "TOO_LARGE", "the form is over 64 KiB")
        }
        var fields: [String: String] = [:]
        for pair in String(buffer: buffer).split(separator: "&") {
            let parts = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            func decode(_ text: Substring) -> String {
                String(text).replacingOccurrences(of: "+", with: " ").removingPercentEncoding ?? ""
            }
            let name = decode(parts[0])
            if fields[name] == nil { fields[name] = parts.count > 1 ? decode(parts[1]) : "" }
        }
        return fields
    }

    /// A signed-in user's form, once its CSRF token matched the session's and the browser did not call it cross-site;
    /// 403 otherwise.
    func actionForm(_ request: Request, context: CoordinatorContext) async throws -> [String: String] {
        try Self.refuseCrossSite(request)
        guard let session = context.dashboardSession else { throw APIError.unauthenticated }
        let form = try await Self.formFields(request)
        guard sessions.checkCSRF(form["csrf"], nonce: session.nonce) else {
            throw APIError(
                .forbidden, code: "CSRF",
                "this form did not come from this dashboard session (its CSRF token is missing or stale); reload the page "
                    + "and try again")
        }
        return form
    }

    /// Browsers say where a request comes from (`Sec-Fetch-Site`); another site's form or script is refused.
    static func refuseCrossSite(_ request: Request) throws {
        if let site = request.headers[HTTPField.Name("Sec-Fetch-Site")!], site == "cross-site" {
            throw APIError(.forbidden, code: "CSRF", "the dashboard refuses forms sent from other sites")
        }
    }
}
