import Foundation
import ManifoldAPI
import ManifoldCore
import ManifoldTestSupport
import Testing

extension ChaosTests {
    /// A build is cancelled while the push of its list is held six seconds by the HTTP fault proxy between the
    /// coordinator and the registry.
    ///
    /// Invariant: never a silent push. Either the tag is absent from the registry, or the build says the list was
    /// pushed: it ended published, or it carries a `list.pushed_after_cancel` event.
    ///
    /// Against replicas the same: the cancel may reach another replica than the one whose publisher holds the push.
    @Test func cancelWhileTheListPushIsDelayed() async throws {
        let registry = try TestRegistry.start(.http)
        let proxy = try registry.withFaultProxy()
        defer { proxy.stop() }
        let harness = try await AgentHarness(
            "cancel-push", leaseTTLSeconds: Chaos.leaseTTLSeconds, registry: registry,
            environment: Chaos.environment.merging(["MANIFOLD_INSECURE_REGISTRIES": "\(registry.host),\(proxy.host)"]) { $1 })
        defer { harness.tearDown() }
        harness.registryHost = proxy.host
        let ledger = harness.scratch.file("ledger")
        #expect(try harness.join("builder").status == 0)
        let agent = try harness.startAgent("builder", script: Chaos.pushScript(ledger: ledger))
        defer { agent.stop() }
        let delay = 6.0
        // Only the list, pushed under the build's tag (or by digest, were it pushed so).
        try proxy.setRules([
            FaultRule(
                method: "PUT", pathRegex: #"/manifests/(sha256:[0-9a-f]{64}|cancelme)$"#, times: FaultRule.forever, delay: delay)
        ])
        let submitted = try await harness.submit(files: AgentHarness.context, tags: ["cancelme"])
        _ = try #require(
            try await harness.watch(submitted.id, timeout: .seconds(60)) { $0.state == .publishing },
            "the build never reached publishing")
        try await Task.sleep(for: .milliseconds(500))
        try await harness.cancel(submitted.id)
        let cancelledAt = ContinuousClock.now
        let final = try await harness.wait(submitted.id, timeout: .seconds(60))
        #expect(final.state.isFinal, "\(final)")
        // Every delayed PUT has landed (or failed) by now.
        let settle = cancelledAt + .seconds(delay * 2 + 4)
        if ContinuousClock.now < settle { try await Task.sleep(until: settle) }

        let reader = try RegistryReader(host: registry.host)
        defer { reader.shutdown() }
        let tagged = try await reader.digest("cancelme")
        let events = try await harness.events(submitted.id)
        let recorded = events.contains { $0.type == "list.pushed_after_cancel" }
        let outcome =
            tagged == nil
            ? "tag absent" : final.state == .published ? "published (cancel came too late)" : "late push recorded: \(recorded)"
        Chaos.figure("cancel during a \(Int(delay)) s list push: build \(final.state.rawValue), \(outcome)")
        if let tagged {
            #expect(
                final.state == .published || recorded,
                "the list \(tagged) was pushed under cancelme after the cancel, but build \(final.state.rawValue) says nothing: \(events.map(\.type))"
            )
        }
        let lateFinal = try await harness.build(submitted.id)
        #expect(lateFinal.state == final.state, "the build changed state after it was final: \(lateFinal)")
    }

    /// Two builds of the same image share the tag `latest`; the older one is held until the newer one has
    /// published, then finishes.
    ///
    /// Invariants: `latest` stays on the newer build's list; the older build publishes its own tag and says, with a
    /// `tag.kept` event, that it left `latest` alone.
    ///
    /// Against replicas the same: the two builds' publications may be claimed by different replicas.
    @Test func olderBuildFinishingLateKeepsLatestOnTheNewer() async throws {
        let harness = try await AgentHarness("tag-order", leaseTTLSeconds: Chaos.leaseTTLSeconds, environment: Chaos.environment)
        defer { harness.tearDown() }
        let ledger = harness.scratch.file("ledger")
        let release = harness.scratch.file("release-older")
        let script = Chaos.pushScript(
            ledger: ledger,
            before:
                #"if [ -n "${MANIFOLD_BUILD_ARG_HOLD:-}" ]; then while [ ! -e "$MANIFOLD_BUILD_ARG_HOLD" ]; do sleep 0.1; done; fi"#
        )
        var agents: [ManagedProcess] = []
        defer { agents.forEach { $0.stop() } }
        for name in ["one", "two"] {
            #expect(try harness.join(name).status == 0)
            agents.append(try harness.startAgent(name, script: script))
        }
        let older = try await harness.submit(
            files: AgentHarness.context, buildArgs: ["HOLD": release.path], tags: ["latest", "older"])
        _ = try #require(try await harness.watch(older.id, timeout: .seconds(20)) { $0.jobs[0].state == .assigned })
        let newer = try await harness.submit(files: AgentHarness.context, tags: ["latest", "newer"])
        let newerFinal = try await harness.wait(newer.id, timeout: .seconds(60))
        #expect(newerFinal.state == .published, "\(newerFinal)")
        try Data().write(to: release)
        let olderFinal = try await harness.wait(older.id, timeout: .seconds(60))
        #expect(olderFinal.state == .published, "\(olderFinal)")

        let reader = try RegistryReader(host: harness.registry.host)
        defer { reader.shutdown() }
        let latest = try await reader.digest("latest")
        Chaos.figure(
            "older build finishing last: latest -> \(latest == newerFinal.listDigest ? "newer" : latest == olderFinal.listDigest ? "OLDER" : "neither") list"
        )
        #expect(latest == newerFinal.listDigest, "latest moved back to the older build's list \(String(describing: latest))")
        #expect(try await reader.digest("older") == olderFinal.listDigest)
        #expect(try await reader.digest("newer") == newerFinal.listDigest)
        let events = try await harness.events(older.id)
        let kept = events.first { $0.type == "tag.kept" }
        #expect(kept != nil, "no tag.kept event on the older build: \(events.map(\.type))")
        if let kept { Chaos.figure("older build: tag.kept \(kept.data)") }
    }
}
