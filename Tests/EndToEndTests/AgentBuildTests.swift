import Foundation
import ManifoldAPI
import ManifoldCore
import ManifoldTestSupport
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// Real coordinator + real agent + real registry + real buildah.
@Suite struct AgentBuildTests {
    @Test func commandBuilderPushesARealImageAndTheCoordinatorPublishesTheList() async throws {
        let harness = try await AgentHarness("command")
        defer { harness.tearDown() }
        let joined = try harness.join("builder")
        #expect(joined.status == 0, "\(joined.stderr)")
        #expect(joined.stdout.contains("Joined"))
        let credential = try FileManager.default.attributesOfItem(atPath: joined.state + "/credential.json")
        #expect((credential[.posixPermissions] as? NSNumber)?.intValue == 0o600)
        let directory = try FileManager.default.attributesOfItem(atPath: joined.state)
        #expect((directory[.posixPermissions] as? NSNumber)?.intValue == 0o700)

        let agent = try harness.startAgent(
            "builder", script: AgentHarness.buildahScript(before: "echo \"token is $(cat \"$MANIFOLD_SECRETS_DIR/TOKEN\")\""))
        defer { agent.stop() }
        let submitted = try await harness.submit(
            files: AgentHarness.context, buildArgs: ["TOKEN": "s3cr3t-value"], secretBuildArgs: ["TOKEN"],
            tags: ["1.0", "latest"])
        let final = try await harness.wait(submitted.id, timeout: .seconds(90))
        #expect(final.state == .published, "\(final)\n\(agent.output())")
        #expect(final.listDigest != nil)
        let raw = try await runChecked("skopeo", ["inspect", "--raw", "--tls-verify=false", "docker://\(harness.image):latest"])
        #expect(raw.contains("\"linux\"") && raw.contains("amd64"), "\(raw)")
        let log = try await harness.log(submitted.id)
        #expect(log.contains("token is ***"), "\(log)")
        #expect(!log.contains("s3cr3t-value"))
        #expect(log.contains("STEP") || log.contains("COPY"), "\(log)")
        // The per-job work directory is cleaned afterwards.
        let work = (try? FileManager.default.contentsOfDirectory(atPath: joined.state + "/work")) ?? []
        #expect(work.isEmpty, "\(work)")
    }

    @Test func buildahBuilderPushesWithVfsAndChroot() async throws {
        let harness = try await AgentHarness("buildah")
        defer { harness.tearDown() }
        let joined = try harness.join("oci")
        #expect(joined.status == 0, "\(joined.stderr)")
        let store = harness.scratch.file("buildah-store").path
        let agent = try ManagedProcess(
            name: "agent-oci", executable: try manifoldAgentBinary(),
            arguments: [
                "run", "--state-dir", joined.state, "--builder", "buildah", "--platform", harness.platform.description,
                "--global-arg=--root=\(store)/root", "--global-arg=--runroot=\(store)/run",
                "--global-arg=--storage-driver=vfs", "--builder-arg=--isolation=chroot", "--push-arg=--tls-verify=false",
            ], logDirectory: harness.scratch.url)
        defer { agent.stop() }
        let submitted = try await harness.submit(files: AgentHarness.context, tags: ["2.0"])
        let final = try await harness.wait(submitted.id, timeout: .seconds(90))
        #expect(final.state == .published, "\(final)\n\(agent.output())")
        let job = try #require(final.jobs.first)
        let raw = try await runChecked("skopeo", ["inspect", "--raw", "--tls-verify=false", "docker://\(harness.image):2.0"])
        #expect(raw.contains(try #require(job.digest).description), "\(raw)")
    }

    @Test func wrongCAFingerprintIsRefusedAtJoin() async throws {
        let harness = try await AgentHarness("fingerprint")
        defer { harness.tearDown() }
        let wrong = "sha256:" + String(repeating: "0", count: 64)
        let joined = try harness.join("impostor", fingerprint: wrong)
        #expect(joined.status != 0)
        #expect(joined.stderr.contains("refusing to trust it"), "\(joined.stderr)")
        #expect(!FileManager.default.fileExists(atPath: joined.state + "/credential.json"))
    }

    @Test func aRevokedCredentialStopsTheAgentWithAClearMessage() async throws {
        let harness = try await AgentHarness("revoked")
        defer { harness.tearDown() }
        let joined = try harness.join("gone")
        #expect(joined.status == 0)
        let credential =
            try JSONSerialization.jsonObject(
                with: try Data(contentsOf: URL(fileURLWithPath: joined.state + "/credential.json"))) as? [String: Any]
        let secret = try #require(credential?["secret"] as? String)
        #expect(!secret.isEmpty)
        // An admin removes the agent: its credential stops working at once.
        let removed = try await manifold(
            ["agent", "remove", "gone"],
            environment: [
                "MANIFOLD_COORDINATOR": harness.baseURL, "MANIFOLD_TOKEN": harness.admin,
                "MANIFOLD_CA_FILE": "\(harness.state)/pki/ca.crt",
            ])
        #expect(removed.status == 0, "\(removed.stderr)")
        let agent = try harness.startAgent("gone", script: "#!/bin/sh\nexit 1\n")
        defer { agent.stop() }
        #expect(await AgentHarness.waitForExit(agent, timeout: .seconds(30)), "\(agent.output())")
        #expect(agent.terminationStatus == 1)
        #expect(agent.output().contains("refused this agent's credential"), "\(agent.output())")
    }

    @Test func unsafeContextFailsTheJobWithAClearReason() async throws {
        let harness = try await AgentHarness("unsafe")
        defer { harness.tearDown() }
        #expect(try harness.join("careful").status == 0)
        let agent = try harness.startAgent("careful", script: AgentHarness.buildahScript())
        defer { agent.stop() }
        // A symlink pointing out of the context, packed by GNU tar.
        let submitted = try await harness.submitRaw { directory in
            try Data("FROM scratch\n".utf8).write(to: directory.appendingPathComponent("Dockerfile"))
            try FileManager.default.createSymbolicLink(
                atPath: directory.appendingPathComponent("escape").path, withDestinationPath: "../../../etc")
        }
        let final = try await harness.wait(submitted.id, timeout: .seconds(60))
        #expect(final.state.isFinal && final.state != .published)
        let reason = final.jobs.first?.reason ?? ""
        #expect(reason.contains("escape") && reason.contains("outside the context"), "\(final)")
    }
}

extension AgentHarness {
    /// Like `submit`, but the context directory is prepared by `prepare` (for links and other odd entries).
    func submitRaw(_ prepare: (URL) throws -> Void) async throws -> BuildView {
        let directory = scratch.file("raw-context-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        try prepare(directory)
        let archive = scratch.file("raw-\(UUID().uuidString).tar.gz")
        try await runChecked("tar", ["-czf", archive.path, "-C", directory.path, "."])
        return try await submitArchive(archive)
    }
}
