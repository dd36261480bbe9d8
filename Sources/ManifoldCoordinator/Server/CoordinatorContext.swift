import Foundation
import Hummingbird
import ManifoldAPI
import ManifoldStore
import NIOCore

/// The per-request context: who is calling, once `AuthenticationMiddleware` has checked the token.
public struct CoordinatorContext: RequestContext {
    public var coreContext: CoreRequestContextStorage
    public var principal: Principal?
    /// The dashboard session the principal came from (its nonce makes the forms' CSRF tokens); nil for API calls.
    var dashboardSession: DashboardSessions.Session?
    /// The client's IP address (the proxy's behind a TCP load balancer), for the failed-authentication limit.
    public var clientAddress: String
    /// The connection the request came on (for ``connectionCloseWatch()``).
    let channel: any Channel
    /// Bodies are read with explicit limits (`max_request_body_bytes`, `max_context_bytes`), not this default.
    public var maxUploadSize: Int { 1 << 20 }

    public init(source: Source) {
        coreContext = .init(source: source)
        principal = nil
        dashboardSession = nil
        channel = source.channel
        let remote = source.channel.remoteAddress
        clientAddress = remote?.ipAddress ?? remote?.pathname ?? "unknown"
    }

    /// The calling user, if it has one of `roles` (admins may do everything).
    func requireUser(_ roles: Set<Role>, to action: String) throws -> TokenGrant {
        switch principal {
        case .user(let grant) where grant.role == .admin || roles.contains(grant.role):
            return grant
        case .none:
            throw APIError.unauthenticated
        default:
            throw APIError.forbidden(action, needs: [.admin] + roles.sorted { $0.rawValue < $1.rawValue })
        }
    }

    /// The calling agent (joined, not left).
    func requireAgent() throws -> (id: String, name: String, state: AgentState) {
        switch principal {
        case .agent(let id, let name, let state): return (id, name, state)
        case .none: throw APIError.unauthenticated
        default: throw APIError(.forbidden, code: "FORBIDDEN", "only agents call this endpoint, with their agent credential")
        }
    }
}

/// Checks `Authorization: Bearer SECRET` against the stored hashes. Paths listed in `publicPaths` need no token.
///
/// A client address that failed to authenticate `auth_failures_per_minute` times gets 429 with `Retry-After`
/// until its minute is over, before its token is looked up.
struct AuthenticationMiddleware: RouterMiddleware {
    typealias Context = CoordinatorContext
    let store: Store
    let hash: @Sendable (String) -> String
    let publicPaths: Set<String>
    let failures: AuthFailureLimiter

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response
    {
        // Public paths need no token; the dashboard's pages authenticate with its session cookie instead
        // (DashboardMiddleware), into the same principal.
        if publicPaths.contains(request.uri.path) || CoordinatorAPI.isDashboardPath(request.uri.path) {
            return try await next(request, context)
        }
        if let seconds = failures.retryAfter(context.clientAddress) {
            var error = APIError(
                .tooManyRequests, code: "TOO_MANY",
                "too many failed authentications from \(context.clientAddress) (more than \(failures.limit) a minute, "
                    + "auth_failures_per_minute); try again in \(seconds) s with a valid token")
            error.headers[.retryAfter] = "\(seconds)"
            throw error
        }
        let principal: Principal
        do {
            principal = try await authenticate(request)
        } catch let error as APIError where error.status == .unauthorized {
            failures.recordFailure(context.clientAddress)
            throw error
        } catch StoreError.unauthenticated(let message) {
            failures.recordFailure(context.clientAddress)
            throw APIError(.unauthorized, code: "UNAUTHENTICATED", message)
        }
        var context = context
        context.principal = principal
        context.logger[metadataKey: "principal"] = "\(Self.describe(principal))"
        return try await next(request, context)
    }

    func authenticate(_ request: Request) async throws -> Principal {
        guard let header = request.headers[.authorization] else { throw APIError.unauthenticated }
        let parts = header.split(separator: " ", maxSplits: 1)
        guard parts.count == 2, parts[0].lowercased() == "bearer", !parts[1].isEmpty else { throw APIError.unauthenticated }
        // Only SHA-256 hashes are stored and looked up: how long a lookup takes reveals nothing about the
        // secret itself, so the indexed lookup needs no constant-time comparison on top.
        guard let principal = try await store.principal(forSecretHash: hash(String(parts[1]))) else {
            throw APIError.invalidToken
        }
        return principal
    }

    static func describe(_ principal: Principal) -> String {
        switch principal {
        case .user(let grant): return "\(grant.role.rawValue):\(grant.name)"
        case .agent(_, let name, _): return "agent:\(name)"
        }
    }
}
