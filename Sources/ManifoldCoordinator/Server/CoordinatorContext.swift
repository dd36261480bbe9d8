import Foundation
import Hummingbird
import ManifoldAPI
import ManifoldStore

/// The per-request context: who is calling, once `AuthenticationMiddleware` has checked the token.
public struct CoordinatorContext: RequestContext {
    public var coreContext: CoreRequestContextStorage
    public var principal: Principal?
    /// Bodies are read with explicit limits (`max_request_body_bytes`, `max_context_bytes`), not this default.
    public var maxUploadSize: Int { 1 << 20 }

    public init(source: Source) {
        coreContext = .init(source: source)
        principal = nil
    }

    /// The calling user, if it has one of `roles` (admins may do everything).
    func requireUser(_ roles: Set<Role>, to action: String) throws -> (tokenId: String, name: String, role: Role) {
        switch principal {
        case .user(let tokenId, let name, let role) where role == .admin || roles.contains(role):
            return (tokenId, name, role)
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
struct AuthenticationMiddleware: RouterMiddleware {
    typealias Context = CoordinatorContext
    let store: Store
    let hash: @Sendable (String) -> String
    let publicPaths: Set<String>

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response
    {
        if publicPaths.contains(request.uri.path) { return try await next(request, context) }
        guard let header = request.headers[.authorization] else { throw APIError.unauthenticated }
        let parts = header.split(separator: " ", maxSplits: 1)
        guard parts.count == 2, parts[0].lowercased() == "bearer", !parts[1].isEmpty else { throw APIError.unauthenticated }
        // Only SHA-256 hashes are stored and looked up: how long a lookup takes reveals nothing about the
        // secret itself, so the indexed lookup needs no constant-time comparison on top.
        guard let principal = try await store.principal(forSecretHash: hash(String(parts[1]))) else {
            throw APIError.invalidToken
        }
        var context = context
        context.principal = principal
        context.logger[metadataKey: "principal"] = "\(Self.describe(principal))"
        return try await next(request, context)
    }

    static func describe(_ principal: Principal) -> String {
        switch principal {
        case .user(_, let name, let role): return "\(role.rawValue):\(name)"
        case .agent(_, let name, _): return "agent:\(name)"
        }
    }
}
