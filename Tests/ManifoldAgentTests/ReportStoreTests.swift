import Foundation
import ManifoldAPI
import ManifoldCore
import ManifoldTestSupport
import Testing

@testable import ManifoldAgent

#if canImport(Glibc)
import Glibc
#endif

@Suite(.serialized) struct ReportStoreTests {
    static func report(_ outcome: CompleteRequest.Outcome, reason: String? = nil) -> CompleteRequest {
        CompleteRequest(jobId: "job_1", epoch: 7, outcome: outcome, reason: reason)
    }

    @Test func aSavedReportRoundTripsAndReplacesTheOldOneAtomically() throws {
        let scratch = try ScratchDirectory(prefix: "reports")
        defer { scratch.remove() }
        let state = StateDirectory(path: scratch.file("agent").path)
        try state.prepare()
        let store = ReportStore(state: state)
        try store.save(Self.report(.failed, reason: "first"))
        try store.save(Self.report(.released, reason: "second"))
        #expect(store.pending() == [Self.report(.released, reason: "second")])
        let names = try FileManager.default.contentsOfDirectory(atPath: state.reportsDirectory.path)
        #expect(names == ["job_1-7.json"], "no temporary file is left behind")
        let mode = try FileManager.default.attributesOfItem(atPath: store.file(for: Self.report(.failed)).path)
        #expect((mode[.posixPermissions] as? NSNumber)?.intValue == 0o600)
        store.remove(Self.report(.released))
        #expect(store.pending().isEmpty)
    }

    @Test func syncingAPathThatIsNotADirectoryFails() throws {
        let scratch = try ScratchDirectory(prefix: "reports")
        defer { scratch.remove() }
        try Data("x".utf8).write(to: scratch.file("file"))
        #expect(throws: AgentError.self) { try DurableFile.synchronizeDirectory(scratch.file("file")) }
        #expect(throws: AgentError.self) { try DurableFile.synchronizeDirectory(scratch.file("missing")) }
        try DurableFile.synchronizeDirectory(scratch.url)
    }

    /// Watched with strace attached to this test process: the file is synced before the rename, and the reports
    /// directory after it.
    @Test func theFileIsSyncedBeforeTheRenameAndTheDirectoryAfterIt() async throws {
        let strace = try #require(
            ["/usr/bin/strace", "/bin/strace"].first { FileManager.default.isExecutableFile(atPath: $0) },
            "this test needs strace (apt-get install strace)")
        let scratch = try ScratchDirectory(prefix: "reports-sync")
        defer { scratch.remove() }
        let state = StateDirectory(path: scratch.file("agent").path)
        try state.prepare()
        let store = ReportStore(state: state)
        let trace = scratch.file("trace")
        let tracer = try ManagedProcess(
            name: "strace", executable: strace,
            arguments: [
                "-f", "-y", "-qq", "-e", "trace=fsync,fdatasync,rename,renameat,renameat2", "-o", trace.path, "-p", "\(getpid())",
            ],
            logDirectory: scratch.url)
        defer { tracer.stop() }
        // strace announces nothing with -qq; wait until it traces a probe rename of ours.
        let probe = scratch.file("probe")
        let deadline = ContinuousClock.now + .seconds(20)
        var attached = false
        while !attached && ContinuousClock.now < deadline {
            try Data().write(to: probe)
            _ = rename(probe.path, probe.path + ".moved")
            try await Task.sleep(for: .milliseconds(100))
            attached = ((try? String(contentsOf: trace, encoding: .utf8)) ?? "").contains("probe.moved")
        }
        try #require(attached, "strace did not attach: \(tracer.output())")
        try store.save(Self.report(.succeeded, reason: "traced"))
        try await Task.sleep(for: .milliseconds(200))
        kill(tracer.processIdentifier, SIGINT)
        _ = await waitForExit(tracer)
        let lines = try String(contentsOf: trace, encoding: .utf8).split(separator: "\n").map(String.init)
        let temporary = state.reportsDirectory.appendingPathComponent(".job_1-7.json.tmp").path
        let final = state.reportsDirectory.appendingPathComponent("job_1-7.json").path
        // strace -y names a descriptor by its resolved path.
        func resolved(_ path: String) -> String { URL(fileURLWithPath: path).resolvingSymlinksInPath().path }
        let fileSync = lines.firstIndex {
            $0.contains("fsync(") && $0.contains("<\(resolved(scratch.url.path))") && $0.contains(".job_1-7.json.tmp>")
        }
        let renamed = lines.firstIndex { $0.contains("rename") && $0.contains(temporary) && $0.contains(final) }
        let directorySync = lines.lastIndex { $0.contains("fsync(") && $0.contains("<\(resolved(state.reportsDirectory.path))>") }
        let summary = lines.filter { $0.contains("job_1") || $0.contains("reports") }.joined(separator: "\n")
        #expect(fileSync != nil && renamed != nil && directorySync != nil, "\(summary)")
        if let fileSync, let renamed, let directorySync {
            #expect(fileSync < renamed && renamed < directorySync, "\(summary)")
        }
    }

    private func waitForExit(_ process: ManagedProcess) async -> Bool {
        let deadline = ContinuousClock.now + .seconds(10)
        while process.isRunning && ContinuousClock.now < deadline { try? await Task.sleep(for: .milliseconds(50)) }
        return !process.isRunning
    }
}
