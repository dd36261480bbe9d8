import Foundation
import ManifoldAPI
import ManifoldCore
import ManifoldTestSupport
import Synchronization
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// The agent under faults, with real processes: a log past the coordinator's limit, a report held up past the
/// lease TTL, a removed agent, a shutdown mid-build and a coordinator restart during the context download. In
/// every case a good build publishes with one counted attempt, or a build that lost its lease stops unreported.
@Suite struct AgentFaultTests {
    /// The `event:` names of a finished build's event stream, in order.
    static func eventTypes(_ harness: AgentHarness, _ id: String) async throws -> [String] {
        let response = try await CoordinatorProcess.call(
            harness.coordinator, "GET", "/api/v1/builds/\(id)/events", token: harness.submitter)
        return String(decoding: response.body, as: UTF8.self).split(separator: "\n")
            .filter { $0.hasPrefix("event: ") }.map { String($0.dropFirst("event: ".count)) }
    }

    /// Attempts that counted against `maxAttempts`: every attempt but those given back or taken away uncounted,
    /// which raise the job's `maxAttempts` by one each (the builds here allow one attempt).
    static func countedAttempts(_ job: JobView) -> Int {
        job.attempts - (job.maxAttempts - 1)
    }

    static func occurrences(of text: String, in output: String) -> Int {
        output.components(separatedBy: text).count - 1
    }

    @Test func aSuccessfulBuildWhoseLogPassesTheCoordinatorsLimitStillPublishes() async throws {
        let limit = 65_536
        let harness = try await AgentHarness(
            "log-cap", environment: ["MANIFOLD_MAX_LOG_BYTES_PER_ATTEMPT": "\(limit)"])
        defer { harness.tearDown() }
        let joined = try harness.join("verbose")
        #expect(joined.status == 0)
        try Data("log_batch_bytes = 4096\n".utf8).write(to: URL(fileURLWithPath: joined.state + "/agent.conf"))
        // About 200 KB of output: three times the coordinator's limit.
        let printLines = """
            i=1; while [ $i -le 3000 ]; do echo "verbose line $i of this build, padded to be sixty-odd bytes"; i=$((i+1)); done
            """
        let agent = try harness.startAgent("verbose", script: AgentHarness.buildahScript(before: printLines))
        defer { agent.stop() }
        let submitted = try await harness.submit(files: AgentHarness.context)
        let final = try await harness.wait(submitted.id, timeout: .seconds(120))
        #expect(final.state == .published, "\(final)\n\(agent.output())")
        let job = try #require(final.jobs.first)
        #expect(job.attempts == 1 && Self.countedAttempts(job) == 1, "\(job)")
        let output = agent.output()
        #expect(Self.occurrences(of: "the coordinator refused more log for job", in: output) == 1, "\(output)")
        #expect(output.contains("reported job \(job.id) attempt epoch"), "\(output)")
        let log = try await harness.log(submitted.id)
        #expect(log.utf8.count <= limit, "the coordinator kept \(log.utf8.count) bytes")
        #expect(log.contains("verbose line 1 of this build"))
        #expect(!log.contains("verbose line 3000 of"))
        // The marker closes the stored log whenever the limit left room for it.
        let marker = "[manifold-agent] the coordinator's log limit for this attempt was reached"
        let markerRoom = marker.utf8.count + 60
        #expect(log.contains(marker) || log.utf8.count > limit - markerRoom, "\(log.suffix(300))")
    }

    @Test func aReportHeldUpPastTheLeaseTTLKeepsItsLeaseAndPublishes() async throws {
        let harness = try await AgentHarness("late-report", leaseTTLSeconds: 8)
        defer { harness.tearDown() }
        #expect(try harness.join("patient").status == 0)
        let built = harness.scratch.file("built")
        let release = harness.scratch.file("release")
        // The image is pushed; the builder then waits until the coordinator is down, so the report cannot go out.
        let script =
            AgentHarness.buildahScript()
            + "\ntouch '\(built.path)'\nwhile [ ! -e '\(release.path)' ]; do sleep 0.1; done\n"
        let agent = try harness.startAgent("patient", script: script)
        defer { agent.stop() }
        let submitted = try await harness.submit(files: AgentHarness.context)
        #expect(await ProcessProbe.waitUntil(.seconds(90)) { FileManager.default.fileExists(atPath: built.path) })
        harness.stopCoordinator()
        try Data().write(to: release)
        #expect(
            await ProcessProbe.waitUntil(.seconds(30)) { agent.output().contains("could not report job") },
            "\(agent.output())")
        // Down for well over the TTL; the agent goes on heartbeating meanwhile.
        try await Task.sleep(for: .seconds(14))
        let output = agent.output()
        let reportFailed = try #require(output.range(of: "could not report job"))
        #expect(output[reportFailed.upperBound...].contains("heartbeat for job"), "\(output)")
        try harness.startCoordinator()
        let final = try await harness.wait(submitted.id, timeout: .seconds(60))
        #expect(final.state == .published, "\(final)\n\(agent.output())")
        let job = try #require(final.jobs.first)
        #expect(job.attempts == 1 && Self.countedAttempts(job) == 1, "\(job)")
        let events = try await Self.eventTypes(harness, submitted.id)
        #expect(!events.contains("job.lost") && !events.contains("job.retrying"), "\(events)")
    }

    @Test func aRemovedAgentStopsItsBuildAndDoesNotReport() async throws {
        let harness = try await AgentHarness("removed")
        defer { harness.tearDown() }
        #expect(try harness.join("doomed").status == 0)
        let pidFile = harness.scratch.file("pids")
        let agent = try harness.startAgent("doomed", script: AgentLifecycleTests.stubbornScript(pids: pidFile))
        defer { agent.stop() }
        let submitted = try await harness.submit(files: AgentHarness.context)
        #expect(await ProcessProbe.waitUntil { ProcessProbe.pids(in: pidFile).count == 3 })
        let pids = ProcessProbe.pids(in: pidFile)
        let removed = try await CoordinatorProcess.call(
            harness.coordinator, "DELETE", "/api/v1/agents/doomed", token: harness.admin)
        #expect((200..<300).contains(removed.status), "\(String(decoding: removed.body, as: UTF8.self))")
        // The next heartbeat (or log append) gets 401: the build is stopped, ignoring SIGTERM costs it 2 s more.
        #expect(
            await ProcessProbe.waitUntil(.seconds(20)) { !pids.contains(where: ProcessProbe.alive) },
            "\(agent.output())")
        // It then learns on its next poll that it cannot go on.
        #expect(await AgentHarness.waitForExit(agent, timeout: .seconds(30)), "\(agent.output())")
        #expect(agent.terminationStatus == 1)
        let output = agent.output()
        #expect(output.contains("401") && output.contains("is not reported"), "\(output)")
        #expect(!output.contains("reported job"), "\(output)")
        // The coordinator took the job back uncounted when the agent was removed; nothing the agent did changed it.
        let view = try await harness.build(submitted.id)
        let job = try #require(view.jobs.first)
        #expect(job.state == .queued && Self.countedAttempts(job) == 0, "\(view)")
    }

    @Test func aBuildWithNoAcknowledgedHeartbeatForALeaseTTLIsStopped() async throws {
        let harness = try await AgentHarness("silent", leaseTTLSeconds: 6)
        defer { harness.tearDown() }
        #expect(try harness.join("cutoff").status == 0)
        let pidFile = harness.scratch.file("pids")
        let agent = try harness.startAgent("cutoff", script: AgentLifecycleTests.stubbornScript(pids: pidFile))
        defer { agent.stop() }
        _ = try await harness.submit(files: AgentHarness.context)
        #expect(await ProcessProbe.waitUntil { ProcessProbe.pids(in: pidFile).count == 3 })
        let pids = ProcessProbe.pids(in: pidFile)
        // The coordinator is frozen: it accepts connections but answers nothing, so each heartbeat runs into its
        // own deadline (2 s here) and none is acknowledged.
        let coordinator = harness.coordinator.process.processIdentifier
        kill(coordinator, SIGSTOP)
        defer { kill(coordinator, SIGCONT) }
        let frozenAt = ContinuousClock.now
        #expect(
            await ProcessProbe.waitUntil(.seconds(30)) { !pids.contains(where: ProcessProbe.alive) },
            "\(agent.output())")
        // Not before a TTL after the last acknowledged heartbeat (at most a second before the freeze).
        #expect(ContinuousClock.now - frozenAt >= .seconds(4))
        let output = agent.output()
        #expect(output.contains("timed out"), "\(output)")
        // By the agent's own log (whole seconds), the stop came a TTL after the last acknowledged heartbeat: the
        // test's own view of the time may lag on a busy machine, the agent's log does not.
        let lines = output.split(separator: "\n")
        let stopped = try #require(
            lines.firstIndex { $0.contains("no heartbeat was acknowledged for a whole lease TTL") }, "\(output)")
        let answered = try #require(
            lines[..<stopped].lastIndex { $0.contains("status=200") && $0.contains("/api/v1/agent/heartbeat") },
            "\(output)")
        // The lease runs from when that heartbeat was sent (heartbeats go one at a time).
        let acknowledged = try #require(
            lines[..<answered].lastIndex { $0.contains("HTTP request") && $0.contains("/api/v1/agent/heartbeat") },
            "\(output)")
        let formatter = ISO8601DateFormatter()
        let stoppedAt = try #require(formatter.date(from: String(lines[stopped].prefix(24))))
        let acknowledgedAt = try #require(formatter.date(from: String(lines[acknowledged].prefix(24))))
        let silence = stoppedAt.timeIntervalSince(acknowledgedAt)
        #expect(silence >= 5 && silence <= 9, "\(lines[acknowledged])\n\(lines[stopped])")
    }

    @Test func sigtermMidBuildGivesTheJobBackUncounted() async throws {
        let harness = try await AgentHarness("release")
        defer { harness.tearDown() }
        #expect(try harness.join("leaving").status == 0)
        #expect(try harness.join("staying").status == 0)
        let pidFile = harness.scratch.file("pids")
        let leaving = try harness.startAgent(
            "leaving", script: AgentLifecycleTests.stubbornScript(pids: pidFile), extra: ["--drain-timeout", "1"])
        defer { leaving.stop() }
        let submitted = try await harness.submit(files: AgentHarness.context)
        #expect(await ProcessProbe.waitUntil { ProcessProbe.pids(in: pidFile).count == 3 })
        let staying = try harness.startAgent("staying", script: AgentHarness.buildahScript())
        defer { staying.stop() }
        kill(leaving.processIdentifier, SIGTERM)
        #expect(await AgentHarness.waitForExit(leaving, timeout: .seconds(30)), "\(leaving.output())")
        #expect(leaving.terminationStatus == 0, "\(leaving.output())")
        #expect(leaving.output().contains("as released"), "\(leaving.output())")
        #expect(leaving.output().contains("the agent is shutting down"), "\(leaving.output())")
        #expect(!ProcessProbe.pids(in: pidFile).contains(where: ProcessProbe.alive))
        // One attempt is allowed: had the given-back attempt counted, the build would have failed.
        let final = try await harness.wait(submitted.id, timeout: .seconds(90))
        #expect(final.state == .published, "\(final)\n\(staying.output())")
        let job = try #require(final.jobs.first)
        #expect(job.agent == "staying" && job.attempts == 2 && Self.countedAttempts(job) == 1, "\(job)")
        let events = try await Self.eventTypes(harness, submitted.id)
        #expect(events.contains("job.released") && !events.contains("job.failed"), "\(events)")
    }

    @Test func aCoordinatorRestartDuringTheContextDownloadCostsNoAttempt() async throws {
        let harness = try await AgentHarness("download-restart", leaseTTLSeconds: 20)
        defer { harness.tearDown() }
        let joined = try harness.join("downloader")
        #expect(joined.status == 0)
        // The agent reaches the coordinator through a relay that sends it at most 4 MB/s, so the download of a
        // 24 MB context takes seconds and the coordinator can be killed in the middle of it. What the killed
        // coordinator's socket still holds (at most its 4 MiB send buffer) cannot complete the download.
        // The relay itself kills the coordinator once 1 MB of an answer has passed, so a busy machine that is slow
        // to run the test cannot let the download finish first.
        let coordinator = harness.coordinator.process.processIdentifier
        let relay = try ThrottledRelay(backendPort: harness.port, bytesPerSecond: 4_000_000) { carried in
            carried > 1_000_000 && kill(coordinator, SIGKILL) == 0
        }
        defer { relay.stop() }
        let credentialFile = URL(fileURLWithPath: joined.state + "/credential.json")
        var credential = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: credentialFile)) as? [String: Any])
        credential["coordinatorURL"] = "https://127.0.0.1:\(relay.port)"
        try JSONSerialization.data(withJSONObject: credential).write(to: credentialFile)

        let agent = try harness.startAgent("downloader", script: AgentHarness.buildahScript())
        defer { agent.stop() }
        // Random bytes do not compress: the archive is about as big as the payload.
        let submitted = try await harness.submitRaw { directory in
            for (name, content) in AgentHarness.context {
                try Data(content.utf8).write(to: directory.appendingPathComponent(name))
            }
            var generator = SystemRandomNumberGenerator()
            var payload = Data(capacity: 24 << 20)
            for _ in 0..<((24 << 20) / 8) { withUnsafeBytes(of: generator.next() as UInt64) { payload.append(contentsOf: $0) } }
            try payload.write(to: directory.appendingPathComponent("payload.bin"))
        }
        #expect(await ProcessProbe.waitUntil(.seconds(90)) { relay.tripped }, "\(agent.output())")
        // Already killed by the relay: signal 0 only checks, and the harness forgets the process.
        harness.stopCoordinator(signal: 0)
        try await Task.sleep(for: .seconds(2))
        try harness.startCoordinator()
        let final = try await harness.wait(submitted.id, timeout: .seconds(120))
        #expect(final.state == .published, "\(final)\n\(agent.output())")
        // Usually the same attempt goes on once the coordinator is back; on a machine so busy that the restart
        // outlasts the lease, the agent gives the job back (released, uncounted) and builds it again. Either way
        // no attempt counts.
        let job = try #require(final.jobs.first)
        #expect(Self.countedAttempts(job) == 1, "\(job)")
        // The fault did land: the first download was cut off and tried again.
        #expect(agent.output().contains("downloading the context"), "\(agent.output())")
        let events = try await Self.eventTypes(harness, submitted.id)
        #expect(!events.contains("job.failed") && !events.contains("job.lost"), "\(events)")
        #expect(job.attempts == 1 || events.contains("job.released"), "\(events)")
    }
}

/// A TCP relay on loopback that passes bytes unchanged (TLS included) and sends what the backend answers at
/// most `bytesPerSecond` per connection. Connections end when either side closes; a backend that is down closes
/// new connections at once.
///
/// `trip` runs on the relay's thread whenever an answer has carried more bytes, until it returns true once: a
/// fault injected at an exact point of a transfer, whatever the test's own tasks are doing.
///
/// Mutable state is a `Mutex`; the sockets are plain descriptors used by the relay's own threads.
final class ThrottledRelay: Sendable {
    let port: Int
    private let listener: Int32
    private let backendPort: Int
    private let bytesPerSecond: Int
    private let trip: @Sendable (Int) -> Bool
    private struct State {
        var stopped = false
        var open: Set<Int32> = []
        var largestDownstream = 0
        var tripped = false
    }
    private let state = Mutex(State())

    init(backendPort: Int, bytesPerSecond: Int, trip: @escaping @Sendable (Int) -> Bool = { _ in false }) throws {
        self.backendPort = backendPort
        self.bytesPerSecond = bytesPerSecond
        self.trip = trip
        let descriptor = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard descriptor >= 0 else { throw TestEnvironmentError("socket() failed: \(errno)") }
        var address = Self.loopback(port: 0)
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(descriptor, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let named = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(descriptor, $0, &length) }
        }
        guard bound == 0, named == 0, listen(descriptor, 64) == 0 else {
            close(descriptor)
            throw TestEnvironmentError("cannot listen on loopback for the relay: \(errno)")
        }
        listener = descriptor
        port = Int(UInt16(bigEndian: address.sin_port))
        let thread = Thread { [self] in acceptLoop() }
        thread.start()
    }

    /// The most bytes one connection has carried from the backend so far.
    var largestDownstream: Int { state.withLock { $0.largestDownstream } }

    /// Whether `trip` has returned true.
    var tripped: Bool { state.withLock { $0.tripped } }

    func stop() {
        let sockets = state.withLock { state -> Set<Int32> in
            state.stopped = true
            return state.open
        }
        shutdown(listener, Int32(SHUT_RDWR))
        for socket in sockets { shutdown(socket, Int32(SHUT_RDWR)) }
    }

    private static func loopback(port: Int) -> sockaddr_in {
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = UInt16(port).bigEndian
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        return address
    }

    private func acceptLoop() {
        defer { close(listener) }
        while true {
            let client = accept(listener, nil, nil)
            if state.withLock({ $0.stopped }) {
                if client >= 0 { close(client) }
                return
            }
            guard client >= 0 else { continue }
            let backend = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            // A small fixed receive buffer (no autotuning): the relay holds little of what the backend sent, so a
            // backend killed mid-answer leaves the client with a cut-off answer, as it would without the relay.
            var bufferSize: Int32 = 256 * 1024
            setsockopt(backend, SOL_SOCKET, SO_RCVBUF, &bufferSize, socklen_t(MemoryLayout<Int32>.size))
            var address = Self.loopback(port: backendPort)
            let connected = withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    connect(backend, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
                }
            }
            guard backend >= 0, connected == 0 else {
                if backend >= 0 { close(backend) }
                close(client)
                continue
            }
            state.withLock { $0.open.formUnion([client, backend]) }
            let connection = Connection(client: client, backend: backend)
            Thread { [self] in
                pump(from: client, to: backend, throttled: false)
                finish(connection)
            }.start()
            Thread { [self] in
                pump(from: backend, to: client, throttled: true)
                finish(connection)
            }.start()
        }
    }

    /// Two pumps per connection: the first to end wakes the other, the last closes both sockets.
    private final class Connection: Sendable {
        let client: Int32
        let backend: Int32
        let pumps = Mutex(2)
        init(client: Int32, backend: Int32) {
            self.client = client
            self.backend = backend
        }
    }

    private func finish(_ connection: Connection) {
        shutdown(connection.client, Int32(SHUT_RDWR))
        shutdown(connection.backend, Int32(SHUT_RDWR))
        let last = connection.pumps.withLock { remaining -> Bool in
            remaining -= 1
            return remaining == 0
        }
        guard last else { return }
        state.withLock { $0.open.subtract([connection.client, connection.backend]) }
        close(connection.client)
        close(connection.backend)
    }

    private func pump(from source: Int32, to target: Int32, throttled: Bool) {
        var buffer = [UInt8](repeating: 0, count: 16 * 1024)
        var carried = 0
        while true {
            let count = buffer.withUnsafeMutableBytes { recv(source, $0.baseAddress, $0.count, 0) }
            guard count > 0 else { return }
            var sent = 0
            while sent < count {
                let written = buffer.withUnsafeBytes {
                    send(target, $0.baseAddress! + sent, count - sent, Int32(MSG_NOSIGNAL))
                }
                guard written > 0 else { return }
                sent += written
            }
            guard throttled else { continue }
            carried += count
            let total = carried
            let armed = state.withLock { state in
                state.largestDownstream = max(state.largestDownstream, total)
                return !state.tripped
            }
            if armed && trip(total) { state.withLock { $0.tripped = true } }
            usleep(useconds_t(count * 1_000_000 / bytesPerSecond))
        }
    }
}
