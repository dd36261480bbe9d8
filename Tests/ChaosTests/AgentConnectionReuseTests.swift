import Foundation
import ManifoldAPI
import ManifoldTestSupport
import Testing

extension ChaosTests {
    /// Eight builds one after another, each printing a couple of hundred log lines, by an agent whose link to the
    /// coordinator runs through a relaying TCP proxy that counts connections.
    ///
    /// Invariant: the agent goes on using the connections it has. Its held poll, heartbeats, log chunks and reports
    /// need a few connections at once, not one more per job: the coordinator must not close a connection after
    /// answering a held poll (it did, through Hummingbird's `consumeWithCancellationOnInboundClose`), which costs the
    /// agent's next request a TCP and TLS handshake.
    ///
    /// Against replicas the same: the count is of the agent's connections, in front of HAProxy.
    @Test func anAgentKeepsItsConnectionsToTheCoordinatorFromJobToJob() async throws {
        let harness = try await AgentHarness("reuse", leaseTTLSeconds: Chaos.leaseTTLSeconds, environment: Chaos.environment)
        defer { harness.tearDown() }
        let link = try TCPFaultProxy.start(backendPort: harness.port)
        defer { link.stop() }
        let ledger = harness.scratch.file("ledger")
        let joined = try harness.join("steady", url: "https://127.0.0.1:\(link.port)")
        #expect(joined.status == 0, "\(joined.stderr)")
        let agent = try harness.startAgent(
            "steady",
            script: Chaos.pushScript(
                ledger: ledger, before: #"i=1; while [ $i -le 200 ]; do say "line $i of a chatty build"; i=$((i+1)); done"#))
        defer { agent.stop() }
        let builds = 8
        for index in 1...builds {
            let view = try await harness.submit(
                files: ["Dockerfile": "FROM scratch\n", "id.txt": "\(index)\n"], tags: ["reuse-\(index)"])
            let final = try await harness.wait(view.id, timeout: .seconds(90))
            #expect(final.state == .published, "build \(index): \(final)")
        }
        let joining = link.connections().count
        agent.stop()
        // Every connection the agent had ends with it; the proxy logs each as it ends.
        var opened = 0
        _ = await ProcessProbe.waitUntil(.seconds(10)) {
            let count = link.connections().count
            defer { opened = count }
            return count > joining && count == opened
        }
        let byAgent = opened - 1  // `manifold-agent join` used one
        #expect(joining <= 1 + 1, "connections ended while the agent ran: \(link.connections())")
        print("the agent opened \(byAgent) connections to the coordinator for \(builds) builds")
        #expect(byAgent >= 1 && byAgent <= 4, "the agent opened \(byAgent) connections for \(builds) builds")
    }
}
