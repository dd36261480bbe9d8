import Foundation
import ManifoldAPI
import ManifoldCore
import ManifoldTestSupport
import Testing

extension ChaosTests {
    /// The registry is down for 40 s twice: once while the coordinator verifies an agent's image, once while it
    /// pushes the list (held by the HTTP fault proxy until the registry is stopped). It comes back on the same
    /// port with the same storage.
    ///
    /// Invariants: neither build fails while the registry is away; both publish afterwards without anyone doing
    /// anything, and the published list is in the registry.
    ///
    /// Against replicas the same: every replica's verifier and publisher meets the outage, and whichever holds the
    /// claim when the registry is back finishes the work.
    @Test func registryDownDuringVerificationAndPublishing() async throws {
        let registry = try TestRegistry.start(.http)
        let outage = RegistryOutage(registry)
        defer { outage.tearDown() }
        let proxy = try registry.withFaultProxy()
        defer { proxy.stop() }
        let harness = try await AgentHarness(
            "registry-down", leaseTTLSeconds: Chaos.leaseTTLSeconds, registry: registry,
            environment: Chaos.environment.merging(["MANIFOLD_INSECURE_REGISTRIES": "\(registry.host),\(proxy.host)"]) { $1 })
        defer { harness.tearDown() }
        harness.registryHost = proxy.host
        let ledger = harness.scratch.file("ledger")
        #expect(try harness.join("builder").status == 0)
        // With build arg SIGNAL, the builder says when it has pushed and waits until the registry is down.
        let agent = try harness.startAgent(
            "builder",
            script: Chaos.pushScript(
                ledger: ledger,
                after: #"""
                    if [ -n "${MANIFOLD_BUILD_ARG_SIGNAL:-}" ]; then
                        touch "$MANIFOLD_BUILD_ARG_SIGNAL.pushed"
                        while [ ! -e "$MANIFOLD_BUILD_ARG_SIGNAL.down" ]; do sleep 0.1; done
                    fi
                    """#))
        defer { agent.stop() }
        let reader = try RegistryReader(host: registry.host)
        defer { reader.shutdown() }
        let outageLength: Duration = .seconds(40)

        // 1. Down while verifying: the agent has pushed, the coordinator has not yet looked.
        let signal = harness.scratch.file("verify")
        let first = try await harness.submit(files: AgentHarness.context, buildArgs: ["SIGNAL": signal.path], tags: ["verify"])
        #expect(await ProcessProbe.waitUntil(.seconds(30)) { FileManager.default.fileExists(atPath: signal.path + ".pushed") })
        outage.stop()
        let downAt = ContinuousClock.now
        try Data().write(to: URL(fileURLWithPath: signal.path + ".down"))
        _ = try await harness.watch(first.id, timeout: .seconds(20)) { $0.jobs[0].state == .verifying }
        var states = Set<String>()
        while ContinuousClock.now < downAt + outageLength {
            if let view = try? await harness.build(first.id) {
                states.insert("\(view.state.rawValue)/\(view.jobs[0].state.rawValue)")
                #expect(!view.state.isFinal, "the build ended while the registry was away: \(view)")
            }
            try await Task.sleep(for: .milliseconds(500))
        }
        try outage.start()
        let upAt = ContinuousClock.now
        let verified = try await harness.wait(first.id, timeout: .seconds(60))
        Chaos.figure(
            "registry down 40 s during verification: \(verified.state.rawValue) \(Chaos.seconds(ContinuousClock.now - upAt)) after it came back (states while down: \(states.sorted().joined(separator: ", ")); attempts \(verified.jobs[0].attempts))"
        )
        #expect(verified.state == .published, "\(verified)\n\(harness.coordinatorLogs().suffix(4_000))")
        #expect(try await reader.digest("verify") == verified.listDigest)

        // 2. Down while publishing: the list's PUT is held by the proxy, and the registry goes away under it.
        try proxy.setRules([FaultRule(method: "PUT", pathRegex: #"/manifests/(sha256:[0-9a-f]{64}|publish)$"#, delay: 3)])
        let second = try await harness.submit(files: AgentHarness.context, tags: ["publish"])
        _ = try #require(
            try await harness.watch(second.id, timeout: .seconds(60)) { $0.state == .publishing },
            "the second build never reached publishing")
        outage.stop()
        let secondDownAt = ContinuousClock.now
        states = []
        while ContinuousClock.now < secondDownAt + outageLength {
            if let view = try? await harness.build(second.id) {
                states.insert(view.state.rawValue)
                #expect(!view.state.isFinal, "the build ended while the registry was away: \(view)")
            }
            try await Task.sleep(for: .milliseconds(500))
        }
        try proxy.clearRules()
        try outage.start()
        let secondUpAt = ContinuousClock.now
        let published = try await harness.wait(second.id, timeout: .seconds(60))
        Chaos.figure(
            "registry down 40 s during publishing: \(published.state.rawValue) \(Chaos.seconds(ContinuousClock.now - secondUpAt)) after it came back (states while down: \(states.sorted().joined(separator: ", ")))"
        )
        #expect(published.state == .published, "\(published)\n\(harness.coordinatorLogs().suffix(4_000))")
        #expect(try await reader.digest("publish") == published.listDigest)
    }
}
