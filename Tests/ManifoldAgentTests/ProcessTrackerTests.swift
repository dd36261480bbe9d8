import Foundation
import ManifoldTestSupport
import Testing

@testable import ManifoldAgent

#if canImport(Glibc)
import Glibc
#endif

/// Leftover builds are killed only when the recorded group leader is provably the same process: same boot, same
/// start time. Real processes throughout: `sleep` run by the agent's own ``ProcessRunner`` (as the leader of a new
/// process group, recorded by the tracker, as builders are) stands for a builder.
@Suite struct ProcessTrackerTests {
    /// A builder process running under ``ProcessRunner`` with `tracker`, until stopped or killed.
    struct RunningBuilder {
        let group: Int64
        let stop: StopSignal
        let run: Task<ProcessRunner.Outcome, any Error>
    }

    static func startBuilder(_ tracker: ProcessTracker, scratch: ScratchDirectory) async throws -> RunningBuilder {
        let spool = try LogSpool(file: scratch.file("log-\(UUID().uuidString)"), secrets: [])
        let stop = StopSignal()
        let run = Task {
            try await ProcessRunner.run(
                "sleep", ["1000"], environment: ProcessInfo.processInfo.environment, workingDirectory: scratch.url,
                log: spool, stop: stop, grace: .milliseconds(200), tracker: tracker)
        }
        // Generous: the whole suite runs in parallel on two cores, and a starved cooperative pool delays the spawn.
        let deadline = ContinuousClock.now + .seconds(90)
        while ContinuousClock.now < deadline {
            let names = (try? FileManager.default.contentsOfDirectory(atPath: tracker.directory.path)) ?? []
            if let group = names.compactMap({ Int64($0) }).first, getpgid(pid_t(group)) == pid_t(group) {
                return RunningBuilder(group: group, stop: stop, run: run)
            }
            try await Task.sleep(for: .milliseconds(20))
        }
        stop.request(.cancelled)
        throw TestEnvironmentError("the builder was not recorded as a process group leader")
    }

    static func alive(_ pid: Int64) -> Bool {
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
            let close = stat.lastIndex(of: ")")
        else { return false }
        let state = stat[stat.index(close, offsetBy: 2)]
        return state != "Z" && state != "X"
    }

    @Test func theIdentityIsThisBootAndTheLeadersStartTime() async throws {
        let scratch = try ScratchDirectory(prefix: "tracker")
        defer { scratch.remove() }
        let tracker = ProcessTracker(directory: scratch.file("processes"))
        let builder = try await Self.startBuilder(tracker, scratch: scratch)
        defer { builder.stop.request(.cancelled) }
        let identity = try #require(ProcessTree.identity(ofLeader: builder.group))
        let boot = try String(contentsOfFile: "/proc/sys/kernel/random/boot_id", encoding: .utf8)
        #expect(identity.boot == boot.trimmingCharacters(in: .whitespacesAndNewlines))
        // Started after this test process, so its start time (ticks since boot) is not smaller.
        let own = try #require(ProcessTree.identity(ofLeader: Int64(getpid())))
        #expect(identity.start >= own.start)
        #expect(ProcessIdentity(recorded: identity.recorded) == identity)
        // What the runner recorded is that identity.
        #expect(ProcessIdentity(recorded: try Data(contentsOf: tracker.file(for: builder.group))) == identity)
        #expect(ProcessTree.identity(ofLeader: 0) == nil)
    }

    @Test func aRecordWhoseStartTimeOrBootDiffersIsNotKilled() async throws {
        let scratch = try ScratchDirectory(prefix: "tracker")
        defer { scratch.remove() }
        let tracker = ProcessTracker(directory: scratch.file("processes"))
        let builder = try await Self.startBuilder(tracker, scratch: scratch)
        defer { builder.stop.request(.cancelled) }
        let group = builder.group
        let recorded = try #require(ProcessIdentity(recorded: try Data(contentsOf: tracker.file(for: group))))

        let mismatches = [
            ProcessIdentity(boot: recorded.boot, start: recorded.start + 1),
            ProcessIdentity(boot: UUID().uuidString.lowercased(), start: recorded.start),
        ]
        for record in mismatches {
            try FileManager.default.createDirectory(at: tracker.directory, withIntermediateDirectories: true)
            try record.recorded.write(to: tracker.file(for: group))
            let outcome = tracker.killLeftovers()
            #expect(outcome.count == 1)
            guard case .spared(group, let reason) = outcome.first else {
                Issue.record("a mismatching record was acted on: \(outcome)")
                continue
            }
            #expect(reason.contains("rebooted") || reason.contains("started at"), "\(reason)")
            try await Task.sleep(for: .milliseconds(300))
            #expect(Self.alive(group), "the process survives a record that is not provably its own")
            #expect(!FileManager.default.fileExists(atPath: tracker.file(for: group).path), "the record is forgotten")
        }

        // A record without an identity (an older agent's) is not enough either.
        try Data().write(to: tracker.file(for: group))
        #expect(tracker.killLeftovers() == [.spared(group: group, reason: "its record holds no boot id and start time")])
        try await Task.sleep(for: .milliseconds(300))
        #expect(Self.alive(group))

        // The true record kills it: the checks above are what kept it alive.
        try recorded.recorded.write(to: tracker.file(for: group))
        #expect(tracker.killLeftovers() == [.killed(group: group)])
        let outcome = try await builder.run.value
        #expect(outcome.exitCode == 128 + SIGKILL && outcome.stoppedFor == nil, "\(outcome)")
    }

    @Test func aRecordOfAProcessThatIsGoneIsForgotten() async throws {
        let scratch = try ScratchDirectory(prefix: "tracker")
        defer { scratch.remove() }
        let tracker = ProcessTracker(directory: scratch.file("processes"))
        let builder = try await Self.startBuilder(tracker, scratch: scratch)
        let recorded = try Data(contentsOf: tracker.file(for: builder.group))
        builder.stop.request(.cancelled)
        _ = try await builder.run.value
        // The runner forgets a builder that ended; a record left by a crash is what remains here.
        try FileManager.default.createDirectory(at: tracker.directory, withIntermediateDirectories: true)
        try recorded.write(to: tracker.file(for: builder.group))
        #expect(tracker.killLeftovers() == [.spared(group: builder.group, reason: "its leader is no longer running")])
        #expect(tracker.killLeftovers().isEmpty)
    }
}
