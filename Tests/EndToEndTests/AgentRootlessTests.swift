import Foundation
import ManifoldTestSupport
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// `agent/setup-rootless.sh` on this host for real: it creates a user with subordinate id ranges that rootless
/// buildah maps, changes nothing when run again, and `doctor` run as that user has no root warning.
@Suite struct AgentRootlessTests {
    static var repository: URL {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    }

    @Test func setupCreatesAnUnprivilegedUserWithRangesOnceAndDoctorRunsCleanAsIt() async throws {
        try #require(geteuid() == 0, "the setup script creates a user; CI runs the tests as root")
        let user = "mfa-e2e-\(getpid())"
        let scratch = try ScratchDirectory(prefix: "rootless")
        try FileManager.default.setAttributes([.posixPermissions: 0o755], ofItemAtPath: scratch.url.path)
        let home = scratch.file("home")
        defer {
            _ = try? runCommand("userdel", [user])
            scratch.remove()
        }
        let script = Self.repository.appendingPathComponent("agent/setup-rootless.sh").path
        let first = try await runCommand("sh", [script, "--user", user, "--home", home.path])
        #expect(first.status == 0, "\(first.stdout)\(first.stderr)")
        #expect(first.stdout.contains("created user \(user)"), "\(first.stdout)")
        #expect(first.stdout.contains("rootless buildah works for \(user)"), "\(first.stdout)")
        let subuid = try String(contentsOfFile: "/etc/subuid", encoding: .utf8)
        let subgid = try String(contentsOfFile: "/etc/subgid", encoding: .utf8)
        let uidLine = try #require(subuid.split(separator: "\n").first { $0.hasPrefix("\(user):") })
        #expect(uidLine.hasSuffix(":65536"))
        #expect(subgid.split(separator: "\n").contains(uidLine), "the same range for gids: \(subgid)")
        // buildah mapped the range: root inside is the user, 1… the subordinate ids.
        let start = uidLine.split(separator: ":")[1]
        #expect(first.stdout.range(of: #"1\s+\#(start)\s+65536"#, options: .regularExpression) != nil, "\(first.stdout)")
        let attributes = try FileManager.default.attributesOfItem(atPath: home.path)
        #expect(attributes[.posixPermissions] as? Int == 0o700)
        #expect(attributes[.ownerAccountName] as? String == user)

        let second = try await runCommand("sh", [script, "--user", user, "--home", home.path])
        #expect(second.status == 0, "\(second.stdout)\(second.stderr)")
        #expect(second.stdout.contains("user \(user) exists"), "\(second.stdout)")
        #expect(second.stdout.contains("subuids of \(user) kept"), "\(second.stdout)")
        #expect(try String(contentsOfFile: "/etc/subuid", encoding: .utf8) == subuid, "a second run changes nothing")
        #expect(try String(contentsOfFile: "/etc/subgid", encoding: .utf8) == subgid)

        // doctor as that user: no root warning (it then fails for want of a credential, which is expected here).
        let doctor = try await runCommand(
            "runuser",
            ["-u", user, "--", try manifoldAgentBinary(), "doctor", "--state-dir", home.path, "--builder", "buildah"])
        #expect(doctor.stdout.contains("user: \(user) (uid "), "\(doctor.stdout)\(doctor.stderr)")
        #expect(!doctor.stdout.contains("WARN"), "\(doctor.stdout)")
        #expect(doctor.stdout.contains("FAIL credential"), "\(doctor.stdout)")

        let bad = try await runCommand("sh", [script, "--user", user, "--count", "1000"])
        #expect(bad.status == 1)
        #expect(bad.stderr.contains("--count 1000 is too small"), "\(bad.stderr)")
    }

    @Test func theShippedUnitRunsAsTheAgentUserAndVerifies() async throws {
        let unit = try String(
            contentsOf: Self.repository.appendingPathComponent("agent/manifold-agent.service"), encoding: .utf8)
        let lines = unit.split(separator: "\n").map(String.init).filter { !$0.hasPrefix("#") }
        #expect(lines.contains("User=manifold-agent"))
        #expect(!lines.contains { $0.hasPrefix("User=root") })
        #expect(!lines.contains { $0.hasPrefix("NoNewPrivileges") }, "newuidmap/newgidmap are setuid helpers")
        // systemd itself accepts it (with ExecStart pointing at the built binary).
        let scratch = try ScratchDirectory(prefix: "unit")
        defer { scratch.remove() }
        let copy = scratch.file("manifold-agent.service")
        try unit.replacingOccurrences(of: "/usr/local/bin/manifold-agent", with: try manifoldAgentBinary())
            .write(to: copy, atomically: true, encoding: .utf8)
        let verified = try await runCommand("systemd-analyze", ["verify", copy.path])
        #expect(verified.status == 0, "\(verified.stdout)\(verified.stderr)")
        #expect(!verified.stderr.contains("manifold-agent.service:"), "\(verified.stderr)")
    }

    @Test func theExampleConfigDoesNotChooseChrootIsolation() async throws {
        let example = try String(
            contentsOf: Self.repository.appendingPathComponent("agent/agent.conf.example"), encoding: .utf8)
        let settings = example.split(separator: "\n").filter { !$0.hasPrefix("#") }
        #expect(!settings.contains { $0.contains("--isolation=chroot") }, "\(settings)")
    }
}
