import Foundation
import ManifoldTestSupport
import Testing

@testable import ManifoldCoordinator

#if canImport(Glibc)
import Glibc
#endif

/// The server's defences against clients that hold connections without using them: the TLS-handshake timeout, the
/// idle timeout (also against headers trickled byte by byte) and the connection cap; and TLS 1.2 as the floor.
@Suite(.serialized) struct ConnectionLimitTests {
    @Test func aConnectionThatSendsNothingIsClosedAfterTheHandshakeTimeout() async throws {
        let fixture = try await CoordinatorFixture.start { settings in
            settings.tlsHandshakeTimeoutSeconds = 1
            settings.idleTimeoutSeconds = 60
        }
        defer { Task { await fixture.stop() } }
        let connection = try RawConnection(port: fixture.port)
        let start = ContinuousClock.now
        let closed = connection.waitForClose(within: .seconds(15))
        #expect(closed, "a silent connection must be closed by the 1 s TLS-handshake timeout")
        #expect(ContinuousClock.now - start < .seconds(15))
    }

    @Test func aCompletedHandshakeIsNotCutByTheHandshakeTimeout() async throws {
        let fixture = try await CoordinatorFixture.start { settings in
            settings.tlsHandshakeTimeoutSeconds = 1
            settings.idleTimeoutSeconds = 60
        }
        defer { Task { await fixture.stop() } }
        // Handshake at once, then say nothing for 3 s (three handshake timeouts), then ask.
        let result = try await runCommand(
            "sh",
            [
                "-c",
                "(sleep 3; printf 'GET /healthz HTTP/1.1\\r\\nHost: 127.0.0.1\\r\\nConnection: close\\r\\n\\r\\n'; sleep 2) | "
                    + "openssl s_client -quiet -connect 127.0.0.1:\(fixture.port) -CAfile \(fixture.state.caCertificate.path)",
            ])
        #expect(result.stdout.contains("HTTP/1.1 200"), "stdout: \(result.stdout)\nstderr: \(result.stderr)")
    }

    @Test func headersTrickledByteByByteAreCutByTheIdleTimeout() async throws {
        let fixture = try await CoordinatorFixture.start { settings in
            settings.tls = false
            settings.idleTimeoutSeconds = 2
        }
        defer { Task { await fixture.stop() } }
        // A well-behaved request on the same settings is answered.
        let polite = try RawConnection(port: fixture.port)
        try polite.send("GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        #expect(polite.read(within: .seconds(5)).hasPrefix("HTTP/1.1 200"))

        let slow = try RawConnection(port: fixture.port)
        try slow.send("GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        let start = ContinuousClock.now
        var cut = false
        // One header byte every 200 ms, for at most 20 s: each byte is progress on the wire, none completes the head.
        while ContinuousClock.now - start < .seconds(20) {
            if slow.waitForClose(within: .milliseconds(200)) {
                cut = true
                break
            }
            guard (try? slow.send("X")) != nil else {
                cut = true
                break
            }
        }
        #expect(cut, "a request head trickled for 20 s must be cut by the 2 s idle timeout")
        #expect(ContinuousClock.now - start < .seconds(10))
    }

    @Test func aHeldPollOutlastsTheIdleTimeout() async throws {
        let fixture = try await CoordinatorFixture.start { settings in
            settings.idleTimeoutSeconds = 1
            settings.pollTimeoutSeconds = 3
        }
        defer { Task { await fixture.stop() } }
        let agent = try await fixture.joinAgent("held", platforms: ["linux/amd64"])
        let start = ContinuousClock.now
        let reply = try await fixture.poll(agent.secret, platforms: ["linux/amd64"], timeout: .seconds(20))
        #expect(reply.status == 204 || reply.status == 200)
        #expect(ContinuousClock.now - start >= .seconds(2), "the poll was held for the poll timeout, not cut at 1 s")
    }

    @Test func connectionsPastTheCapWaitUntilOneCloses() async throws {
        let fixture = try await CoordinatorFixture.start { settings in
            settings.tls = false
            settings.maxConnections = 2
            settings.idleTimeoutSeconds = 60
        }
        defer { Task { await fixture.stop() } }
        let request = "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
        // Two connections, each answered once, so the server has certainly accepted both; both stay open.
        let first = try RawConnection(port: fixture.port)
        try first.send(request)
        #expect(first.read(within: .seconds(5)).hasPrefix("HTTP/1.1 200"))
        let second = try RawConnection(port: fixture.port)
        try second.send(request)
        #expect(second.read(within: .seconds(5)).hasPrefix("HTTP/1.1 200"))

        let third = try RawConnection(port: fixture.port)
        try third.send(request)
        #expect(third.read(within: .seconds(2)).isEmpty, "a third connection must not be served while two are open")
        first.close()
        #expect(third.read(within: .seconds(10)).hasPrefix("HTTP/1.1 200"), "served once a slot is free")
    }

    @Test func tlsBelow1_2IsRefused() async throws {
        let fixture = try await CoordinatorFixture.start()
        defer { Task { await fixture.stop() } }
        func handshake(_ version: String) throws -> (status: Int32, output: String) {
            // SECLEVEL=0 lets the client itself offer TLS 1.0/1.1, so a refusal can only come from the server.
            let result = try runCommand(
                "openssl",
                [
                    "s_client", "-connect", "127.0.0.1:\(fixture.port)", version, "-cipher", "DEFAULT@SECLEVEL=0",
                    "-CAfile", fixture.state.caCertificate.path, "-verify_return_error",
                ], input: Data())
            return (result.status, result.stdout + result.stderr)
        }
        for old in ["-tls1", "-tls1_1"] {
            let result = try handshake(old)
            #expect(result.status != 0, "\(old) must be refused: \(result.output)")
            #expect(result.output.contains("alert protocol version") || result.output.contains("unsupported protocol"))
        }
        let modern = try handshake("-tls1_2")
        #expect(modern.status == 0, "\(modern.output)")
        #expect(modern.output.contains("TLSv1.2"))
        let newest = try handshake("-tls1_3")
        #expect(newest.status == 0, "\(newest.output)")
    }
}

/// A plain TCP connection to loopback, for clients that misbehave on purpose.
final class RawConnection: Sendable {
    let descriptor: Int32

    init(port: Int) throws {
        descriptor = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard descriptor >= 0 else { throw TestEnvironmentError("socket() failed: errno \(errno)") }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let status = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(descriptor, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        guard status == 0 else {
            Glibc.close(descriptor)
            throw TestEnvironmentError("connect to 127.0.0.1:\(port) failed: errno \(errno)")
        }
    }

    deinit { Glibc.close(descriptor) }

    func send(_ text: String) throws {
        let bytes = Array(text.utf8)
        let sent = bytes.withUnsafeBytes { Glibc.send(descriptor, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
        guard sent == bytes.count else { throw TestEnvironmentError("send failed: errno \(errno)") }
    }

    /// Whatever arrives within `timeout` (stopping early at end of stream or once something arrived and 200 ms
    /// pass without more).
    func read(within timeout: Duration) -> String {
        var received: [UInt8] = []
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            let wait = received.isEmpty ? deadline - ContinuousClock.now : .milliseconds(200)
            guard readable(within: wait) else { break }
            var buffer = [UInt8](repeating: 0, count: 4096)
            let count = buffer.withUnsafeMutableBytes { recv(descriptor, $0.baseAddress, $0.count, 0) }
            if count <= 0 { break }
            received += buffer[..<count]
        }
        return String(decoding: received, as: UTF8.self)
    }

    /// True once the peer has closed the connection (end of stream or reset) within `timeout`; data is discarded.
    func waitForClose(within timeout: Duration) -> Bool {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            guard readable(within: deadline - ContinuousClock.now) else { return false }
            var buffer = [UInt8](repeating: 0, count: 4096)
            let count = buffer.withUnsafeMutableBytes { recv(descriptor, $0.baseAddress, $0.count, 0) }
            if count <= 0 { return true }
        }
        return false
    }

    func close() { shutdown(descriptor, Int32(SHUT_RDWR)) }

    private func readable(within timeout: Duration) -> Bool {
        var entry = pollfd(fd: descriptor, events: Int16(POLLIN), revents: 0)
        let milliseconds = max(
            0, Int32(timeout.components.seconds * 1000 + timeout.components.attoseconds / 1_000_000_000_000_000))
        return poll(&entry, 1, milliseconds) > 0
    }
}
