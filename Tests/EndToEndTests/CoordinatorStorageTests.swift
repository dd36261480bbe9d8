import Foundation
import ManifoldAPI
import ManifoldCore
import ManifoldHTTP
import ManifoldTestSupport
import Testing

/// The state directory as a resource of its own: one coordinator at a time, and a full file system as a clear,
/// recoverable state. Real `manifold serve` processes, a real tmpfs.
@Suite struct CoordinatorStorageTests {
    typealias Coordinators = CoordinatorProcess

    @Test func aSecondCoordinatorOnTheSameStateDirectoryRefusesToStartAndTheLockDiesWithTheProcess() async throws {
        let scratch = try ScratchDirectory(prefix: "lock")
        defer { scratch.remove() }
        let port = try Loopback.freePort()
        let state = scratch.file("state").path
        let admin = try Coordinators.initialise(state: state, port: port).admin
        let first = try Coordinators.serve(state: state, port: port, logDirectory: scratch.url, name: "coordinator-1")
        defer {
            first.process.stop()
            first.client.shutdown()
        }

        // Another port, so only the lock can stop it.
        let otherPort = try Loopback.freePort()
        let started = ContinuousClock.now
        let second = try ManagedProcess(
            name: "coordinator-2", executable: try manifoldBinary(),
            arguments: ["serve", "--state-dir", state, "--listen", "127.0.0.1:\(otherPort)"], logDirectory: scratch.url)
        while second.isRunning, ContinuousClock.now - started < .seconds(120) { try await Task.sleep(for: .milliseconds(25)) }
        #expect(!second.isRunning, "the second coordinator kept running")
        #expect(second.terminationStatus != 0)
        let message = second.output()
        #expect(message.contains(state), "\(message)")
        #expect(message.contains("process \(first.process.processIdentifier)"), "\(message)")
        #expect(!Loopback.isListening(port: otherPort))

        // The first one keeps serving.
        #expect(try await Coordinators.call(first, "GET", "/readyz", token: admin).status == 200)
        #expect(try await Coordinators.call(first, "GET", "/api/v1/builds", token: admin).status == 200)

        // kill -9 leaves the lock file behind, but the kernel released the lock with the process.
        kill(first.process.processIdentifier, SIGKILL)
        for _ in 0..<200 where first.process.isRunning { try await Task.sleep(for: .milliseconds(25)) }
        let third = try Coordinators.serve(state: state, port: port, logDirectory: scratch.url, name: "coordinator-3")
        defer {
            third.process.stop()
            third.client.shutdown()
        }
        #expect(try await Coordinators.call(third, "GET", "/readyz", token: admin).status == 200)
        let lockText = try String(contentsOfFile: "\(state)/manifold.lock", encoding: .utf8)
        #expect(lockText == "\(third.process.processIdentifier)\n")
    }

    /// The error body of an answer: code and message.
    static func error(_ response: HTTPResponse) -> (code: String, message: String) {
        let body = (try? JSONSerialization.jsonObject(with: response.body)) as? [String: Any]
        let error = body?["error"] as? [String: Any]
        return (error?["code"] as? String ?? "", error?["message"] as? String ?? String(decoding: response.body, as: UTF8.self))
    }

    static func upload(_ running: Coordinators.Running, _ bytes: Data, token: String) async throws -> HTTPResponse {
        var request = HTTPRequest(
            method: "PUT", url: running.base.appendingPathComponent("api/v1/contexts/\(Digest.compute(of: bytes))"),
            body: .bytes(bytes))
        request.headers.add("Authorization", "Bearer \(token)")
        return try await running.client.execute(request)
    }

    /// Writes zeros to `path` until the file system refuses another byte; returns the bytes written.
    static func fill(_ path: String) throws -> Int {
        let descriptor = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        guard descriptor >= 0 else { throw TestEnvironmentError("cannot create \(path): errno \(errno)") }
        defer { close(descriptor) }
        var total = 0
        for size in [1 << 20, 4096, 1] {
            let block = [UInt8](repeating: 0, count: size)
            while true {
                let written = block.withUnsafeBytes { write(descriptor, $0.baseAddress!, $0.count) }
                if written <= 0 { break }
                total += written
            }
        }
        guard errno == ENOSPC else { throw TestEnvironmentError("filling \(path) stopped with errno \(errno), not ENOSPC") }
        return total
    }

    @Test(.enabled(if: getuid() == 0, "mounting a tmpfs needs root"))
    func aFullFileSystemGives507AndNotReadyThenRecoversByItself() async throws {
        let scratch = try ScratchDirectory(prefix: "full-disk")
        defer { scratch.remove() }
        let disk = scratch.file("disk").path
        try FileManager.default.createDirectory(atPath: disk, withIntermediateDirectories: true)
        let mounted = try await runCommand("/bin/mount", ["-t", "tmpfs", "-o", "size=24m", "tmpfs", disk])
        guard mounted.status == 0 else { throw TestEnvironmentError("mount failed: \(mounted.stderr)") }
        var running: Coordinators.Running?
        defer {
            running?.process.stop()
            running?.client.shutdown()
            if (try? runCommand("/bin/umount", [disk]))?.status != 0 { _ = try? runCommand("/bin/umount", ["-l", disk]) }
        }
        let port = try Loopback.freePort()
        let state = "\(disk)/state"
        let admin = try Coordinators.initialise(state: state, port: port).admin
        let coordinator = try Coordinators.serve(state: state, port: port, logDirectory: scratch.url, name: "coordinator")
        running = coordinator
        #expect(try await Coordinators.call(coordinator, "GET", "/readyz", token: admin).status == 200)
        let context = Data((0..<65_536).map { UInt8(truncatingIfNeeded: $0 &* 7) })
        #expect(try await Self.upload(coordinator, Data("before".utf8), token: admin).status == 201)

        let filler = "\(disk)/filler"
        let filled = try Self.fill(filler)
        #expect(filled > 1 << 20)

        // A write through the database: 507 naming the cause, nothing changed.
        let refused = try await Coordinators.call(
            coordinator, "POST", "/api/v1/tokens", token: admin, json: CreateTokenRequest(name: "ci", role: .submitter))
        #expect(refused.status == 507, "\(String(decoding: refused.body, as: UTF8.self))")
        #expect(Self.error(refused).code == "STORAGE_UNAVAILABLE")
        #expect(Self.error(refused).message.contains("cannot write its database"), "\(Self.error(refused).message)")
        #expect(Self.error(refused).message.contains("Free space"))
        // Not ready while writes fail, saying why. The refused write may have given back the little space its
        // rollback freed (readiness would rightly see it): fill again, so the disk is surely full for the probe.
        _ = try Self.fill("\(disk)/filler-2")
        let notReady = try await Coordinators.call(coordinator, "GET", "/readyz", token: admin)
        #expect(notReady.status == 503)
        #expect(Self.error(notReady).code == "NOT_READY")
        #expect(Self.error(notReady).message.contains(state), "\(Self.error(notReady).message)")
        #expect(Self.error(notReady).message.lowercased().contains("full"), "\(Self.error(notReady).message)")
        // A context upload: 507 naming the contexts directory, and no half-written file left behind.
        let upload = try await Self.upload(coordinator, context, token: admin)
        #expect(upload.status == 507, "\(String(decoding: upload.body, as: UTF8.self))")
        #expect(Self.error(upload).message.contains("\(state)/contexts"), "\(Self.error(upload).message)")
        #expect(Self.error(upload).message.contains("No space left on device"), "\(Self.error(upload).message)")
        #expect(try FileManager.default.contentsOfDirectory(atPath: "\(state)/contexts").filter { $0.hasPrefix(".") } == [])
        // Reads go on.
        #expect(try await Coordinators.call(coordinator, "GET", "/api/v1/builds", token: admin).status == 200)

        // Space returns: readiness comes back by itself (its own probe write), then writes work again.
        try FileManager.default.removeItem(atPath: filler)
        try FileManager.default.removeItem(atPath: "\(disk)/filler-2")
        #expect(try await Coordinators.call(coordinator, "GET", "/readyz", token: admin).status == 200)
        let created = try await Coordinators.call(
            coordinator, "POST", "/api/v1/tokens", token: admin, json: CreateTokenRequest(name: "ci", role: .submitter))
        #expect(created.status == 201, "\(String(decoding: created.body, as: UTF8.self))")
        #expect(try await Self.upload(coordinator, context, token: admin).status == 201)
        #expect(coordinator.process.isRunning)
    }
}
