import Foundation
import ManifoldAPI
import ManifoldCore
import ManifoldHTTP
import ManifoldTestSupport
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// The coordinator frozen: one scenario at a time, like the rest of the chaos suite, since its timing means nothing on
/// a machine that runs two at once. (In the parallel end-to-end phase its lease was once lost before any freeze: the
/// test process's own heartbeats resume on the concurrency pool, which synchronous tests waiting for child processes
/// held for up to 45 s. Those waits now happen off the pool, see `ProcessRunning+Async.swift`.)
extension ChaosTests {
    /// A coordinator that could not run (frozen here with SIGSTOP; an overloaded machine or a suspended VM alike) for
    /// longer than the lease TTL does not count that time against the agents: once it runs again, an agent that
    /// heartbeats within a TTL keeps its lease. (Before, the lease reaper ran first on resume and expired it: 409.)
    @Test func aCoordinatorFrozenPastTheLeaseTTLLetsAgentsKeepTheirLeases() async throws {
        let scratch = try ScratchDirectory(prefix: "frozen")
        defer { scratch.remove() }
        let (port, state, initialised) = try initialise(in: scratch)
        let admin = try #require(CoordinatorProcess.value(after: "Admin token", in: initialised))
        let join = try #require(CoordinatorProcess.value(after: "Agent join token", in: initialised))
        let running = try CoordinatorProcess.serve(
            state: state, port: port, logDirectory: scratch.url, name: "coordinator",
            environment: ["MANIFOLD_LEASE_TTL_SECONDS": "20", "MANIFOLD_HEARTBEAT_INTERVAL_SECONDS": "5"])
        defer {
            kill(running.process.processIdentifier, SIGCONT)
            running.process.stop()
            running.client.shutdown()
        }
        let created = try await CoordinatorProcess.call(
            running, "POST", "/api/v1/tokens", token: admin, json: CreateTokenRequest(name: "ci", role: .submitter))
        let submitter = try APICoding.decoder().decode(CreatedToken.self, from: created.body).secret
        let linux = Platform(os: "linux", architecture: "amd64")
        let joined = try await CoordinatorProcess.call(
            running, "POST", "/api/v1/agent/join", token: join,
            json: JoinRequest(name: "builder", platforms: [linux], labels: [:], builders: ["command"], version: "test"))
        let agent = try APICoding.decoder().decode(JoinResponse.self, from: joined.body).secret
        let context = Data("FROM scratch\n".utf8)
        let contextDigest = Digest.compute(of: context)
        var upload = HTTPRequest(
            method: "PUT", url: running.base.appendingPathComponent("api/v1/contexts/\(contextDigest)"), body: .bytes(context))
        upload.headers.add("Authorization", "Bearer \(submitter)")
        #expect(try await running.client.execute(upload).status == 201)
        let spec = BuildSpec(
            image: "127.0.0.1:5000/frozen/app", tags: ["1.0"], platforms: [PlatformSpec(platform: linux)],
            context: .upload(digest: contextDigest))
        #expect(try await CoordinatorProcess.call(running, "POST", "/api/v1/builds", token: submitter, json: spec).status == 201)
        let polled = try await CoordinatorProcess.call(
            running, "POST", "/api/v1/agent/poll", token: agent,
            json: PollRequest(platforms: [linux], labels: [:], builders: ["command"], version: "test"))
        let lease = try #require(try APICoding.decoder().decode(PollResponse.self, from: polled.body).lease)
        func heartbeat() async throws -> String {
            let answer = try await CoordinatorProcess.call(
                running, "POST", "/api/v1/agent/heartbeat", token: agent,
                json: HeartbeatRequest(jobId: lease.jobId, epoch: lease.epoch))
            let said = answer.status == 200 ? "200" : "\(answer.status) \(String(decoding: answer.body, as: UTF8.self))"
            return said
        }
        // Past the reaper's start-up grace (one TTL), with the lease renewed as an agent does. (A TTL of 20 s: on the
        // loaded end-to-end phase, a 6 s TTL was seen to lapse between two of these heartbeats.)
        for _ in 0..<11 {
            #expect(try await heartbeat() == "200")
            try await Task.sleep(for: .seconds(2))
        }

        // Frozen for two TTLs: longer than the TTL plus the reaper's tolerance (max(5 s, TTL / 4)).
        kill(running.process.processIdentifier, SIGSTOP)
        try await Task.sleep(for: .seconds(40))
        kill(running.process.processIdentifier, SIGCONT)
        try await Task.sleep(for: .seconds(1))
        let afterThaw = try await heartbeat()
        #expect(afterThaw == "200", "the lease was expired for the time the coordinator was frozen")
        #expect(try await heartbeat() == "200")
        Chaos.figure("coordinator frozen 40 s (TTL 20 s): the first heartbeat after SIGCONT answered \(afterThaw)")
    }

    /// `manifold init` into `scratch`'s `state` directory on a free loopback port, allowing registries on 127.0.0.1.
    private func initialise(in scratch: ScratchDirectory) throws -> (port: Int, state: String, stdout: String) {
        let port = try Loopback.freePort()
        let state = scratch.file("state").path
        let initialised = try manifold([
            "init", "--state-dir", state, "--listen", "127.0.0.1:\(port)", "--allow-registry", "127.0.0.1",
        ])
        #expect(initialised.status == 0, "\(initialised.stderr)")
        return (port, state, initialised.stdout)
    }
}
