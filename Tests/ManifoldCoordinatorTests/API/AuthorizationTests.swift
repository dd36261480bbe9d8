import Foundation
import ManifoldAPI
import ManifoldClient
import ManifoldCore
import ManifoldHTTP
import ManifoldTestSupport
import Testing

@testable import ManifoldCoordinator

/// Every endpoint × every kind of caller: no token, a wrong token, viewer, submitter, join, an agent, admin, and
/// a viewer and a submitter whose repository scopes do not cover the build the endpoints name.
@Suite struct AuthorizationTests {
    enum Caller: String, CaseIterable {
        case none, wrong, viewer, submitter, join, agent, admin, scopedViewer, scopedSubmitter

        /// The role whose permissions the caller has.
        var role: String {
            switch self {
            case .scopedViewer: "viewer"
            case .scopedSubmitter: "submitter"
            default: rawValue
            }
        }
    }

    struct Endpoint: Sendable, CustomStringConvertible {
        var method: String
        var path: String
        var allowed: Set<String>
        /// Names the matrix build: a scoped caller whose role is allowed gets 404, as if it did not exist.
        var outOfScope = false
        var description: String { "\(method) \(path)" }
    }

    @Test func everyEndpointChecksTheCallersRole() async throws {
        let fixture = try await CoordinatorFixture.start { $0.pollTimeoutSeconds = 1 }
        let submitter = try await fixture.token(.submitter)
        var tokens: [Caller: String] = [
            .wrong: "mfd_admin_not-a-real-token", .viewer: try await fixture.token(.viewer), .submitter: submitter,
            .join: fixture.initialisation.joinToken, .admin: fixture.initialisation.adminToken,
        ]
        for (caller, role) in [(Caller.scopedViewer, Role.viewer), (.scopedSubmitter, .submitter)] {
            tokens[caller] = try await fixture.call(
                "POST", "/api/v1/tokens", token: fixture.initialisation.adminToken,
                json: CreateTokenRequest(name: caller.rawValue, role: role, repositories: ["127.0.0.1/elsewhere/*"])
            ).decode(CreatedToken.self).secret
        }
        tokens[.agent] = try await fixture.joinAgent("matrix-agent", platforms: ["linux/amd64"]).secret
        let doomed = try await fixture.joinAgent("doomed-agent", platforms: ["linux/amd64"]).secret
        let build = try await fixture.submit(submitter, image: "127.0.0.1:1/matrix/app", platforms: ["linux/amd64"])
        let context = try await fixture.uploadContext(submitter, content: "matrix")
        let users: Set<String> = ["viewer", "submitter", "admin"]
        let writers: Set<String> = ["submitter", "admin"]
        let endpoints = [
            Endpoint(method: "GET", path: "/api/v1/builds", allowed: users),
            Endpoint(method: "GET", path: "/api/v1/builds/\(build.id)", allowed: users, outOfScope: true),
            Endpoint(
                method: "GET", path: "/api/v1/builds/\(build.id)/logs?platform=linux/amd64", allowed: users, outOfScope: true),
            // A missing build answers 404 once the caller is allowed, so the stream does not stay open.
            Endpoint(method: "GET", path: "/api/v1/builds/bld_missing/events", allowed: users),
            Endpoint(method: "POST", path: "/api/v1/builds", allowed: writers),
            Endpoint(method: "POST", path: "/api/v1/builds/\(build.id)/retry", allowed: writers, outOfScope: true),
            Endpoint(method: "POST", path: "/api/v1/builds/bld_missing/cancel", allowed: writers),
            // A context is there for the token that uploaded it and for whoever sees a build that uses it; to any
            // other it answers 404, as if it did not exist (see `ScopeTests`).
            Endpoint(method: "HEAD", path: "/api/v1/contexts/\(context)", allowed: writers, outOfScope: true),
            Endpoint(method: "PUT", path: "/api/v1/contexts/\(context)", allowed: writers),
            // An agent downloads only the contexts of jobs leased to it (see `anotherAgentCannotTouchALeasedJob`).
            Endpoint(method: "GET", path: "/api/v1/contexts/\(context)", allowed: users, outOfScope: true),
            Endpoint(method: "GET", path: "/api/v1/agents", allowed: users),
            Endpoint(method: "POST", path: "/api/v1/agents/matrix-agent/state", allowed: ["admin"]),
            // Only admins remove agents; the agent removed is not the one calling.
            Endpoint(method: "DELETE", path: "/api/v1/agents/doomed-agent", allowed: ["admin"]),
            Endpoint(method: "GET", path: "/api/v1/tokens", allowed: ["admin"]),
            Endpoint(method: "POST", path: "/api/v1/tokens", allowed: ["admin"]),
            Endpoint(method: "DELETE", path: "/api/v1/tokens/tok_missing", allowed: ["admin"]),
            Endpoint(method: "GET", path: "/api/v1/pools", allowed: ["admin"]),
            Endpoint(method: "POST", path: "/api/v1/pools", allowed: ["admin"]),
            Endpoint(method: "DELETE", path: "/api/v1/pools/pool_missing", allowed: ["admin"]),
            Endpoint(method: "GET", path: "/metrics", allowed: users),
            Endpoint(method: "POST", path: "/api/v1/agent/join", allowed: ["join", "admin"]),
            Endpoint(method: "POST", path: "/api/v1/agent/poll", allowed: ["agent"]),
            Endpoint(method: "POST", path: "/api/v1/agent/heartbeat", allowed: ["agent"]),
            Endpoint(method: "PUT", path: "/api/v1/agent/jobs/job_x/logs?epoch=1&offset=0", allowed: ["agent"]),
            Endpoint(method: "POST", path: "/api/v1/agent/complete", allowed: ["agent"]),
            // Last: the agent is gone afterwards.
            Endpoint(method: "POST", path: "/api/v1/agent/leave", allowed: ["agent"]),
        ]
        for endpoint in endpoints {
            for caller in Caller.allCases {
                let reply = try await fixture.call(
                    endpoint.method, endpoint.path, token: caller == .none ? nil : tokens[caller], body: Data("{}".utf8))
                switch caller {
                case .none, .wrong:
                    #expect(reply.status == 401, "\(endpoint) as \(caller): \(reply.status)")
                    if endpoint.method != "HEAD" { #expect(reply.error?.code == "UNAUTHENTICATED", "\(endpoint) as \(caller)") }
                case .scopedViewer where endpoint.outOfScope, .scopedSubmitter where endpoint.outOfScope:
                    // Allowed by role but not by scope: 404, so the build's existence is not revealed.
                    let expected = endpoint.allowed.contains(caller.role) ? 404 : 403
                    #expect(reply.status == expected, "\(endpoint) as \(caller) got \(reply.status), expected \(expected)")
                default:
                    if endpoint.allowed.contains(caller.role) {
                        #expect(
                            reply.status != 401 && reply.status != 403, "\(endpoint) as \(caller) was refused: \(reply.status)")
                    } else {
                        #expect(reply.status == 403, "\(endpoint) as \(caller) got \(reply.status), expected 403")
                    }
                }
            }
        }
        // The removed agent's credential no longer works.
        #expect(try await fixture.call("POST", "/api/v1/agent/leave", token: doomed).status == 401)
        // Health and the CA certificate need no token.
        #expect(try await fixture.call("GET", "/healthz", token: nil).status == 200)
        #expect(try await fixture.call("GET", "/readyz", token: nil).status == 200)
        let ca = try await fixture.call("GET", "/api/v1/ca.crt", token: nil)
        #expect(String(decoding: ca.body, as: UTF8.self).contains("BEGIN CERTIFICATE"))
        await fixture.stop()
    }

    /// An agent may only touch jobs leased to it: another agent's heartbeat, log append, completion and context
    /// download for that job are refused with 403 and change nothing.
    @Test func anotherAgentCannotTouchALeasedJob() async throws {
        let fixture = try await CoordinatorFixture.start { $0.pollTimeoutSeconds = 1 }
        let submitter = try await fixture.token(.submitter)
        let holder = try await fixture.joinAgent("holder", platforms: ["linux/amd64"])
        let other = try await fixture.joinAgent("other", platforms: ["linux/amd64"])
        let build = try await fixture.submit(submitter, image: "127.0.0.1:1/guard/app", platforms: ["linux/amd64"])
        let lease = try #require(
            try await fixture.poll(holder.secret, platforms: ["linux/amd64"]).decode(PollResponse.self).lease)
        guard case .upload(let context) = lease.spec.context else {
            Issue.record("expected an uploaded context")
            return
        }
        let logPath = "/api/v1/agent/jobs/\(lease.jobId)/logs?epoch=\(lease.epoch)&offset=0"
        let attempts: [(String, String, Data?, (any Encodable & Sendable)?)] = [
            ("POST", "/api/v1/agent/heartbeat", nil, HeartbeatRequest(jobId: lease.jobId, epoch: lease.epoch)),
            ("PUT", logPath, Data("forged output\n".utf8), nil),
            (
                "POST", "/api/v1/agent/complete", nil,
                CompleteRequest(jobId: lease.jobId, epoch: lease.epoch, outcome: .failed, exitCode: 1, reason: "forged")
            ),
            ("GET", "/api/v1/contexts/\(context)", nil, nil),
        ]
        for (method, path, body, json) in attempts {
            let reply: CoordinatorFixture.Reply
            if let json {
                reply = try await fixture.call(method, path, token: other.secret, json: AnyEncodable(json))
            } else {
                reply = try await fixture.call(method, path, token: other.secret, body: body)
            }
            #expect(reply.status == 403, "\(method) \(path) by another agent: \(reply.status)")
            #expect(reply.error?.code == "FORBIDDEN")
        }
        // Nothing changed: the job is still the holder's, with an empty log, and the holder can go on.
        let view = try await fixture.build(build.id, token: submitter)
        #expect(view.jobs[0].state == .assigned)
        #expect(view.jobs[0].agent == "holder")
        let log = try await fixture.call("GET", "/api/v1/builds/\(build.id)/logs?platform=linux/amd64", token: submitter)
        #expect(log.body.isEmpty)
        let heartbeat = try await fixture.call(
            "POST", "/api/v1/agent/heartbeat", token: holder.secret,
            json: HeartbeatRequest(jobId: lease.jobId, epoch: lease.epoch))
        #expect(heartbeat.status == 200)
        #expect(try await fixture.call("GET", "/api/v1/contexts/\(context)", token: holder.secret).status == 200)
        // The agent's client tells the coordinator's reason, not a bare status (the error body never goes to the file).
        let otherClient = CoordinatorClient(
            baseURL: fixture.baseURL, token: other.secret, tls: TLSConfiguration(caFile: fixture.state.caCertificate.path))
        let target = FileManager.default.temporaryDirectory.appendingPathComponent("context-\(UUID().uuidString)")
        do {
            try await otherClient.downloadContext(context, to: target)
            Issue.record("another agent downloaded the context")
        } catch {
            #expect("\(error)".contains("only the contexts of jobs currently leased to it"), "\(error)")
        }
        #expect(!FileManager.default.fileExists(atPath: target.path))
        await fixture.stop()
    }

    @Test func aRevokedTokenStopsWorking() async throws {
        let fixture = try await CoordinatorFixture.start()
        let created = try await fixture.call(
            "POST", "/api/v1/tokens", token: fixture.initialisation.adminToken,
            json: CreateTokenRequest(name: "temp", role: .viewer)
        ).decode(CreatedToken.self)
        #expect(try await fixture.call("GET", "/api/v1/builds", token: created.secret).status == 200)
        #expect(
            try await fixture.call("DELETE", "/api/v1/tokens/\(created.token.id)", token: fixture.initialisation.adminToken)
                .status == 204)
        #expect(try await fixture.call("GET", "/api/v1/builds", token: created.secret).status == 401)
        // Secrets are stored only as hashes.
        let database = try Data(contentsOf: fixture.state.database)
        #expect(database.range(of: Data(created.secret.utf8)) == nil)
        #expect(database.range(of: Data(fixture.initialisation.adminToken.utf8)) == nil)
        await fixture.stop()
    }
}

/// Lets a table of requests carry differently typed JSON bodies.
struct AnyEncodable: Encodable, Sendable {
    let value: any Encodable & Sendable
    init(_ value: any Encodable & Sendable) { self.value = value }
    func encode(to encoder: any Encoder) throws { try value.encode(to: encoder) }
}
