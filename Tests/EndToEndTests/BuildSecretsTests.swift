import Foundation
import ManifoldAPI
import ManifoldCore
import ManifoldTestSupport
import Synchronization
import Testing

/// Issue 10, point 1: a build secret reaches a real buildah build as a build secret, and never the image, the
/// builder's command line or environment, the logs, or the coordinator's database.
@Suite struct BuildSecretsTests {
    @Test func aRealBuildahBuildUsesTheSecretWhichNeverReachesTheImageArgvEnvironmentLogOrDatabase() async throws {
        let harness = try await AgentHarness("secrets")
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

        let value = "npm_" + UUID().uuidString.replacingOccurrences(of: "-", with: "")
        let hash = Digest.compute(of: Data(value.utf8)).hex
        // The RUN step proves it read exactly the secret (by its hash: the value is in no file of the context),
        // prints it (for the log masking check) and stays a few seconds, while this test scans every process.
        let script =
            "echo \(hash) ' /run/secrets/NPM_TOKEN' | /bin/busybox sha256sum -c -s"
            + " && echo secret-checked && /bin/busybox cat /run/secrets/NPM_TOKEN && echo && /bin/busybox sleep 4"
        let dockerfile = """
            FROM scratch
            COPY busybox /bin/busybox
            RUN --mount=type=secret,id=NPM_TOKEN ["/bin/busybox", "sh", "-c", "\(script)"]
            COPY hello.txt /hello.txt

            """
        let scan = ProcessScan(needle: Data(value.utf8), marker: "\(store)/root")
        scan.start()
        let submitted = try await harness.submitRaw(secrets: ["NPM_TOKEN": value]) { directory in
            try Data(dockerfile.utf8).write(to: directory.appendingPathComponent("Dockerfile"))
            try Data("hello\n".utf8).write(to: directory.appendingPathComponent("hello.txt"))
            try FileManager.default.copyItem(atPath: "/bin/busybox", toPath: directory.appendingPathComponent("busybox").path)
        }
        let final = try await harness.wait(submitted.id, timeout: .seconds(180))
        let scanned = scan.stop()
        #expect(final.state == .published, "\(final)\n\(agent.output())")

        // The builder ran while the scan went on, with the secret as a file reference only.
        #expect(scanned.builderCommandLines > 0, "no buildah build was seen running during the scan")
        #expect(scanned.builderSawSecretFlag, "the buildah command line had no --secret id=NPM_TOKEN,src=…")
        #expect(scanned.leaks.isEmpty, "the value was in: \(scanned.leaks)")

        // The build did use it: the RUN step checked its hash, and printed it — masked in the stored log.
        let log = try await harness.log(submitted.id)
        #expect(log.contains("secret-checked"), "\(log)")
        #expect(log.contains("***"), "\(log)")
        #expect(!log.contains(value), "\(log)")
        #expect(!log.contains("--build-arg"), "\(log)")

        // Neither the config (history included) nor any layer of the pushed image holds it.
        let config = try await runChecked(
            "skopeo", ["inspect", "--config", "--tls-verify=false", "docker://\(harness.image):1.0-linux-amd64"])
        #expect(config.contains("history") && config.contains("NPM_TOKEN"), "\(config)")
        #expect(!config.contains(value), "\(config)")
        let copied = harness.scratch.file("pulled")
        try await runChecked(
            "skopeo", ["copy", "--src-tls-verify=false", "docker://\(harness.image):1.0-linux-amd64", "dir:\(copied.path)"])
        for name in try FileManager.default.contentsOfDirectory(atPath: copied.path) {
            let file = copied.appendingPathComponent(name)
            var bytes = try Data(contentsOf: file)
            if bytes.starts(with: [0x1f, 0x8b]) {
                bytes = try Data(contentsOf: URL(fileURLWithPath: try gunzip(file, scratch: harness.scratch)))
            }
            #expect(bytes.range(of: Data(value.utf8)) == nil, "the image's \(name) holds the secret")
        }

        // The job's secrets directory is gone with its work directory.
        let work = (try? FileManager.default.contentsOfDirectory(atPath: joined.state + "/work")) ?? []
        #expect(work.isEmpty, "\(work)")

        // The build is final: the coordinator's database (and its WAL) holds no trace of the value, and the sealed
        // copy is gone too.
        let stored = try await runChecked(
            "sqlite3", ["\(harness.state)/manifold.db", "SELECT count(*) FROM build_secret; SELECT spec FROM build;"])
        #expect(stored.hasPrefix("0\n"), "\(stored)")
        #expect(stored.contains("\"buildArgs\":{}"), "\(stored)")
        for suffix in ["", "-wal", "-shm"] {
            let path = "\(harness.state)/manifold.db\(suffix)"
            guard let bytes = FileManager.default.contents(atPath: path) else { continue }
            #expect(bytes.range(of: Data(value.utf8)) == nil, "\(path) holds the secret")
        }
        let key = try FileManager.default.attributesOfItem(atPath: "\(harness.state)/pki/secrets.key")
        #expect((key[.posixPermissions] as? NSNumber)?.intValue == 0o600)
        #expect((key[.size] as? NSNumber)?.intValue == 32)
    }

    @Test func aFinishedBuildNeedsItsSecretsAgainToBeRetried() async throws {
        let harness = try await AgentHarness("secrets-retry")
        defer { harness.tearDown() }
        #expect(try harness.join("cmd").status == 0)
        // The command builder gets the secret as a file in MANIFOLD_SECRETS_DIR, and writes what it saw.
        let seen = harness.scratch.file("seen.txt").path
        let agent = try harness.startAgent(
            "cmd",
            script: AgentHarness.buildahScript(
                before: """
                    stat -c '%a' "$MANIFOLD_SECRETS_DIR" "$MANIFOLD_SECRETS_DIR/API_KEY" >> \(seen)
                    sha256sum "$MANIFOLD_SECRETS_DIR/API_KEY" | cut -d' ' -f1 >> \(seen)
                    env | grep -c 'first-value\\|second-value' >> \(seen) || true
                    """))
        defer { agent.stop() }
        let first = try await harness.submit(files: AgentHarness.context, secrets: ["API_KEY": "first-value"])
        #expect(try await harness.wait(first.id, timeout: .seconds(90)).state == .published)

        // Erased when the build was published: a retry without them is refused, naming them and how to give them.
        let refused = try await CoordinatorProcess.call(
            harness.coordinator, "POST", "/api/v1/builds/\(first.id)/retry", token: harness.submitter,
            json: RetryRequest(platform: "linux/amd64"))
        let refusal = String(decoding: refused.body, as: UTF8.self)
        #expect(refused.status == 409, "\(refusal)")
        #expect(refusal.contains("API_KEY") && refusal.contains("--secret"), "\(refusal)")
        let wrong = try await CoordinatorProcess.call(
            harness.coordinator, "POST", "/api/v1/builds/\(first.id)/retry", token: harness.submitter,
            json: RetryRequest(platform: "linux/amd64", secrets: ["OTHER": "x"]))
        #expect(wrong.status == 400, "\(String(decoding: wrong.body, as: UTF8.self))")

        // Through the CLI, from the environment: the new value reaches the builder.
        let retried = try await manifold(
            ["build", "retry", first.id, "--platform", "linux/amd64", "--secret", "API_KEY"],
            environment: [
                "MANIFOLD_COORDINATOR": harness.baseURL, "MANIFOLD_TOKEN": harness.submitter,
                "MANIFOLD_CA_FILE": "\(harness.state)/pki/ca.crt", "API_KEY": "second-value",
            ])
        #expect(retried.status == 0, "\(retried.stderr)")
        let again = try await harness.wait(first.id, timeout: .seconds(90)) { $0.state.isFinal && $0.jobs[0].attempts == 2 }
        #expect(again.state == .published, "\(again)\n\(agent.output())")
        let lines = try String(contentsOfFile: seen, encoding: .utf8).split(separator: "\n").map(String.init)
        let firstHash = Digest.compute(of: Data("first-value".utf8)).hex
        let secondHash = Digest.compute(of: Data("second-value".utf8)).hex
        #expect(lines == ["700", "600", firstHash, "0", "700", "600", secondHash, "0"], "\(lines)")
    }
}

/// Scans `/proc/*/cmdline` and `/proc/*/environ` of every process until cancelled, recording any that holds
/// `needle`, and whether a `buildah build` with a `--secret` flag was seen.
/// Scans every process's command line and environment for a value, on a thread of its own (the test's
/// cooperative pool is shared with the suites running beside it, and a starved scan would see nothing), counting
/// the buildah builds whose command line names `marker` (this test's storage root, so other tests' builds never
/// count).
final class ProcessScan: Sendable {
    struct Result: Sendable {
        var leaks: Set<String> = []
        var builderCommandLines = 0
        var builderSawSecretFlag = false
    }

    let needle: Data
    let marker: String
    private let result = Mutex(Result())
    private let stopped = Mutex(false)

    init(needle: Data, marker: String) {
        self.needle = needle
        self.marker = marker
    }

    func start() {
        let thread = Thread { [self] in
            while !stopped.withLock({ $0 }) {
                scanOnce()
                Thread.sleep(forTimeInterval: 0.02)
            }
        }
        thread.start()
    }

    func stop() -> Result {
        stopped.withLock { $0 = true }
        Thread.sleep(forTimeInterval: 0.1)
        return result.withLock { $0 }
    }

    private func scanOnce() {
        for entry in (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? [] {
            guard let pid = Int32(entry) else { continue }
            for part in ["cmdline", "environ"] {
                guard let bytes = FileManager.default.contents(atPath: "/proc/\(pid)/\(part)") else { continue }
                let leaked = bytes.range(of: needle) != nil
                let text = String(decoding: bytes, as: UTF8.self).replacingOccurrences(of: "\0", with: " ")
                result.withLock { result in
                    if leaked { result.leaks.insert("/proc/\(pid)/\(part): \(text.prefix(300))") }
                    if part == "cmdline", text.contains("buildah"), text.contains(" build "), text.contains(marker) {
                        result.builderCommandLines += 1
                        if text.contains("--secret id=NPM_TOKEN,src=") { result.builderSawSecretFlag = true }
                    }
                }
            }
        }
    }
}

extension AgentHarness {
    /// Like `submitRaw`, with build secrets.
    func submitRaw(secrets: [String: String], _ prepare: (URL) throws -> Void) async throws -> BuildView {
        let directory = scratch.file("raw-context-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        try prepare(directory)
        let archive = scratch.file("raw-\(UUID().uuidString).tar.gz")
        try await runChecked("tar", ["-czf", archive.path, "-C", directory.path, "."])
        return try await submitArchive(archive, secrets: secrets)
    }
}

/// Decompresses a gzip'd file next to the scratch directory; returns the path of the result.
func gunzip(_ file: URL, scratch: ScratchDirectory) throws -> String {
    let output = scratch.file("gunzip-\(UUID().uuidString)").path
    let result = try runCommand("/bin/sh", ["-c", "gzip -dc '\(file.path)' > '\(output)'"])
    guard result.status == 0 else { throw TestEnvironmentError("gzip -dc \(file.path) failed: \(result.stderr)") }
    return output
}
