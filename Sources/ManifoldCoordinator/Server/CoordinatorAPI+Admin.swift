import Foundation
import Hummingbird
import ManifoldAPI
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
            let secret = generateSecret("mfd_\(create.role.rawValue)_")
            let token = try await store.createToken(name: create.name, role: create.role, secretHash: hash(secret))
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
            try await store.revokeToken(id: try Self.parameter("id", context))
            return Response(status: .noContent)
        }
    }
}
