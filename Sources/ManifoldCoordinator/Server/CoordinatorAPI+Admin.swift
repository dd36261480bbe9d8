import Foundation
import Hummingbird
import ManifoldAPI
import ManifoldCore
import ManifoldStore

extension CoordinatorAPI {
    func addAdminRoutes(to router: Router<CoordinatorContext>) {
        router.get("/api/v1/agents") { _, context -> Response in
            _ = try context.requireUser([.viewer, .submitter], to: "list agents")
            return try Self.json(try await store.listAgents())
        }

        router.post("/api/v1/agents/:name/state") { request, context -> Response in
            let user = try context.requireUser([], to: "change agents")
            let change = try await decode(AgentStateRequest.self, from: request, context: context)
            guard change.state != .left else {
                throw APIError.badRequest("an agent leaves by itself (manifold-agent leave); use disabled", field: "state")
            }
            let agent = try await store.setAgentState(try Self.parameter("name", context), to: change.state)
            context.logger.info(
                "agent state changed", metadata: ["agent": "\(agent.name)", "state": "\(change.state)", "by": "\(user.name)"])
            notifier.notify([.work, .progress])
            return try Self.json(agent)
        }

        router.delete("/api/v1/agents/:name") { _, context -> Response in
            let user = try context.requireUser([], to: "remove agents")
            let agent = try await store.removeAgent(try Self.parameter("name", context))
            context.logger.info("agent removed", metadata: ["agent": "\(agent.name)", "by": "\(user.name)"])
            notifier.notify([.work, .progress])
            return try Self.json(agent)
        }

        router.post("/api/v1/tokens") { request, context -> Response in
            let user = try context.requireUser([], to: "create tokens")
            let create = try await decode(CreateTokenRequest.self, from: request, context: context)
            let tokenOptions = try Self.tokenOptions(create, now: store.currentTime())
            let secret = generateSecret("mfd_\(create.role.rawValue)_")
            let token = try await store.createToken(
                name: create.name, role: create.role, secretHash: hash(secret), options: tokenOptions)
            context.logger.info(
                "token created", metadata: ["token": "\(token.id)", "role": "\(token.role)", "by": "\(user.name)"])
            return try Self.json(CreatedToken(token: token, secret: secret), status: .created)
        }

        router.get("/api/v1/tokens") { _, context -> Response in
            _ = try context.requireUser([], to: "list tokens")
            return try Self.json(try await store.listTokens())
        }

        router.delete("/api/v1/tokens/:id") { _, context -> Response in
            _ = try context.requireUser([], to: "revoke tokens")
            let id = try Self.parameter("id", context)
            try await store.revokeToken(id: id)
            // Its open event streams and log follows end at once.
            streams.revoke(tokenId: id)
            notifier.notify(.progress)
            return Response(status: .noContent)
        }
    }

    /// Default expiry of a join token that names none: 24 hours.
    static let defaultJoinTokenLifetime = 86_400
    /// The longest expiry a token may be given: ten years.
    static let maxTokenLifetime = 10 * 366 * 86_400

    /// Turns a token request's options into the store's, with the defaults: a join token expires after 24 h and
    /// joins one agent; other tokens never expire unless asked.
    static func tokenOptions(_ create: CreateTokenRequest, now: Date) throws -> TokenOptions {
        var lifetime = create.expiresInSeconds
        if lifetime == nil, create.role == .join { lifetime = defaultJoinTokenLifetime }
        if let lifetime, !(1...maxTokenLifetime).contains(lifetime) {
            throw APIError.badRequest(
                "expiresInSeconds \(lifetime) must be 1…\(maxTokenLifetime) (ten years)", field: "expiresInSeconds")
        }
        let repositories = try (create.repositories ?? []).enumerated().map { index, text in
            do { return try RepositoryPattern(parsing: text) } catch {
                throw APIError.badRequest("\(error)", field: "repositories[\(index)]")
            }
        }
        return TokenOptions(
            pool: create.pool, expiresAt: lifetime.map { now.addingTimeInterval(TimeInterval($0)) },
            uses: create.uses ?? (create.role == .join ? 1 : nil), repositories: repositories.isEmpty ? nil : repositories)
    }

    func addPoolRoutes(to router: Router<CoordinatorContext>) {
        router.post("/api/v1/pools") { request, context -> Response in
            let user = try context.requireUser([], to: "create pools")
            let create = try await decode(CreatePoolRequest.self, from: request, context: context)
            let platforms = try create.platforms.enumerated().map { index, text in
                do { return try Platform(parsing: text) } catch {
                    throw APIError.badRequest("\(error)", field: "platforms[\(index)]")
                }
            }
            let pool = try await store.createPool(name: create.name, labels: create.labels, platforms: platforms)
            context.logger.info("pool created", metadata: ["pool": "\(pool.name)", "by": "\(user.name)"])
            return try Self.json(pool, status: .created)
        }

        router.get("/api/v1/pools") { _, context -> Response in
            _ = try context.requireUser([], to: "list pools")
            return try Self.json(try await store.listPools())
        }

        router.delete("/api/v1/pools/:name") { _, context -> Response in
            let user = try context.requireUser([], to: "remove pools")
            let name = try Self.parameter("name", context)
            try await store.removePool(name: name)
            context.logger.info("pool removed", metadata: ["pool": "\(name)", "by": "\(user.name)"])
            return Response(status: .noContent)
        }
    }
}
