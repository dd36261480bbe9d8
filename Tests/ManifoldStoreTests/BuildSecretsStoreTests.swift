import Foundation
import GRDB
import ManifoldAPI
import ManifoldCore
import Synchronization
import Testing

@testable import ManifoldStore

/// Build secrets at rest: sealed with the state directory's key, never in a spec row, handed out only in the
/// lease, erased when the build is final.
@Suite struct BuildSecretsStoreTests {
    @Test func sealedSecretsOpenOnlyWithTheirKeyAndTheirBuild() throws {
        let key = SecretsKey.generate()
        let secrets = ["NPM_TOKEN": "npm_abc", "EMPTY": "", "UNICODE": "pässwörd ✓"]
        let sealed = try key.seal(secrets, buildId: "bld_1")
        #expect(try key.open(sealed, buildId: "bld_1") == secrets)
        #expect(sealed.range(of: Data("npm_abc".utf8)) == nil)
        // The same key from its bytes (the key file) opens it; another key, another build or one changed byte not.
        #expect(try SecretsKey(data: key.data).open(sealed, buildId: "bld_1") == secrets)
        #expect(throws: SecretsKeyError.unreadable(buildId: "bld_1")) {
            try SecretsKey.generate().open(sealed, buildId: "bld_1")
        }
        #expect(throws: SecretsKeyError.unreadable(buildId: "bld_2")) { try key.open(sealed, buildId: "bld_2") }
        for index in [0, 12, sealed.count / 2, sealed.count - 1] {
            var tampered = sealed
            tampered[index] ^= 0x01
            #expect(throws: SecretsKeyError.unreadable(buildId: "bld_1"), "byte \(index)") {
                try key.open(tampered, buildId: "bld_1")
            }
        }
        #expect(throws: SecretsKeyError.unreadable(buildId: "bld_1")) { try key.open(sealed.prefix(10), buildId: "bld_1") }
        #expect(throws: SecretsKeyError.wrongSize(16)) { try SecretsKey(data: Data(count: 16)) }
        // Two seals of the same secrets differ (a fresh nonce each time).
        #expect(try key.seal(secrets, buildId: "bld_1") != sealed)
    }

    @Test func specsHoldNoValuesAndOnlyTheLeaseCarriesThem() async throws {
        let fixture = try await StoreFixture()
        let build = try await submit(
            fixture, secrets: ["NPM_TOKEN": "npm_secret_1"], buildArgs: ["VERSION": "1", "LEGACY": "legacy_secret_2"],
            secretBuildArgs: ["LEGACY"])
        let rows = try await fixture.store.backend.read { db in
            try String.fetchAll(db, sql: "SELECT spec FROM build UNION ALL SELECT spec FROM job")
                + [try String.fetchOne(db, sql: "SELECT secretNames FROM build") ?? ""]
        }
        for row in rows {
            #expect(!row.contains("npm_secret_1") && !row.contains("legacy_secret_2"), "\(row)")
        }
        #expect(rows.last == "[\"LEGACY\",\"NPM_TOKEN\"]")
        let sealed = try await fixture.store.backend.read { db in
            try Data.fetchOne(db, sql: "SELECT sealed FROM build_secret WHERE buildId = ?", arguments: [build.id])
        }
        #expect(try fixture.secretsKey.open(try #require(sealed), buildId: build.id).count == 2)

        let agent = try await fixture.join("a", platforms: ["linux/amd64"])
        let lease = try #require(try await fixture.poll(agent))
        #expect(lease.spec.secrets == ["NPM_TOKEN": "npm_secret_1", "LEGACY": "legacy_secret_2"])
        #expect(lease.spec.buildArgs == ["VERSION": "1"])
        #expect(lease.spec.secretBuildArgs.isEmpty)
    }

    @Test func agentsOfProtocol2GetNoJobWithSecrets() async throws {
        let fixture = try await StoreFixture()
        _ = try await submit(fixture, secrets: ["NPM_TOKEN": "npm_secret_1"])
        let plain = try await fixture.submit(platforms: ["linux/amd64"])
        let agent = try await fixture.join("old", platforms: ["linux/amd64"])
        let old = PollRequest(
            platforms: agent.platforms, labels: [:], builders: ["buildah"], version: "old", protocolVersion: 2)
        // The older build is skipped, the one without secrets is served.
        let lease = try #require(try await fixture.store.lease(agentId: agent.id, poll: old))
        #expect(lease.spec.buildId == plain.id)
        _ = try await fixture.store.heartbeat(agentId: agent.id, HeartbeatRequest(jobId: lease.jobId, epoch: lease.epoch))
        #expect(try await fixture.store.lease(agentId: agent.id, poll: old) == nil)
        let current = try await fixture.join("new", platforms: ["linux/amd64"])
        #expect(try #require(try await fixture.poll(current)).spec.secrets == ["NPM_TOKEN": "npm_secret_1"])
    }

    @Test func secretsAreErasedWhenTheBuildIsFinal() async throws {
        let fixture = try await StoreFixture()
        let agent = try await fixture.join("a", platforms: ["linux/amd64"])

        // Published.
        let published = try await submit(fixture, secrets: ["K": "published-value"])
        let sealed = try await sealedBytes(fixture, published.id)
        let lease = try #require(try await fixture.poll(agent))
        _ = try await fixture.succeed(lease, agent: agent)
        try await fixture.verifyAll()
        #expect(try await fixture.store.hasStoredSecrets(buildId: published.id))  // publishing is not final
        let row = try #require(try await fixture.store.duePublications().ready.first)
        try await fixture.publish(id: row.id, listDigest: Digest.compute(of: Data("list".utf8)), mediaType: "x")
        #expect(try await fixture.store.build(id: published.id).state == .published)
        #expect(try await fixture.store.hasStoredSecrets(buildId: published.id) == false)

        // Failed.
        let failed = try await submit(fixture, secrets: ["K": "failed-value"], maxAttempts: 1)
        let failing = try #require(try await fixture.poll(agent))
        try await fixture.store.complete(
            agentId: agent.id, CompleteRequest(jobId: failing.jobId, epoch: failing.epoch, outcome: .failed, exitCode: 1))
        #expect(try await fixture.store.build(id: failed.id).state == .failed)
        #expect(try await fixture.store.hasStoredSecrets(buildId: failed.id) == false)

        // Cancelled while queued.
        let cancelled = try await submit(fixture, secrets: ["K": "cancelled-value"])
        _ = try await fixture.store.cancelBuild(id: cancelled.id, by: "t")
        #expect(try await fixture.store.hasStoredSecrets(buildId: cancelled.id) == false)

        // The page that held the sealed value keeps none of it once the WAL is checkpointed into the file.
        if let sqlite = fixture.store.backend as? SQLiteBackend {
            try sqlite.checkpoint()
            let file = try Data(contentsOf: URL(fileURLWithPath: sqlite.path))
            #expect(file.range(of: sealed.suffix(24)) == nil)
        }
    }

    @Test func aFinalBuildIsRetriedOnlyWithItsSecretsAgain() async throws {
        let fixture = try await StoreFixture()
        let agent = try await fixture.join("a", platforms: ["linux/amd64"])
        let build = try await submit(fixture, secrets: ["NPM_TOKEN": "first", "SSH_KEY": "key"], maxAttempts: 1)
        let lease = try #require(try await fixture.poll(agent))
        try await fixture.store.complete(
            agentId: agent.id, CompleteRequest(jobId: lease.jobId, epoch: lease.epoch, outcome: .failed, exitCode: 1))
        #expect(try await fixture.store.build(id: build.id).state == .failed)

        await #expect {
            _ = try await fixture.store.retryJob(buildId: build.id, platform: "linux/amd64")
        } throws: { error in
            guard case StoreError.conflict(let message) = error else { return false }
            return message.contains("NPM_TOKEN, SSH_KEY") && message.contains("--secret")
        }
        await #expect {
            _ = try await fixture.store.retryJob(
                buildId: build.id, platform: "linux/amd64", secrets: ["NPM_TOKEN": "x", "OTHER": "y"])
        } throws: { error in
            guard case StoreError.invalid(let field, let message) = error else { return false }
            return field == "secrets" && message.contains("missing: SSH_KEY") && message.contains("OTHER")
        }
        let tooLong = String(repeating: "x", count: BuildLimits.maxSecretBytes + 1)
        await #expect {
            _ = try await fixture.store.retryJob(
                buildId: build.id, platform: "linux/amd64", secrets: ["NPM_TOKEN": tooLong, "SSH_KEY": "k"])
        } throws: { error in
            guard case StoreError.invalid(_, let message) = error else { return false }
            return message.contains("65536")
        }
        #expect(try await fixture.store.build(id: build.id).state == .failed)  // nothing changed

        _ = try await fixture.store.retryJob(
            buildId: build.id, platform: "linux/amd64", secrets: ["NPM_TOKEN": "second", "SSH_KEY": "key2"])
        let again = try #require(try await fixture.poll(agent))
        #expect(again.spec.secrets == ["NPM_TOKEN": "second", "SSH_KEY": "key2"])

        // A build without secrets takes none.
        _ = try await fixture.succeed(again, agent: agent)
        let plain = try await fixture.submit(platforms: ["linux/amd64"], maxAttempts: 1)
        let plainLease = try #require(try await fixture.poll(agent))
        try await fixture.store.complete(
            agentId: agent.id, CompleteRequest(jobId: plainLease.jobId, epoch: plainLease.epoch, outcome: .failed, exitCode: 1))
        await #expect {
            _ = try await fixture.store.retryJob(buildId: plain.id, platform: "linux/amd64", secrets: ["A": "b"])
        } throws: { error in
            guard case StoreError.invalid(let field, _) = error else { return false }
            return field == "secrets"
        }
    }

    @Test func aJobWhoseSecretsCannotBeOpenedFailsWithTheReason() async throws {
        let fixture = try await StoreFixture()
        let build = try await submit(fixture, secrets: ["K": "value"])
        // Another coordinator key (pki/secrets.key replaced): the job cannot start, and says why.
        let clock = fixture.clock
        let other = try await fixture.another(secretsKey: SecretsKey.generate(), now: { clock.now })
        let agent = try await fixture.join("a", platforms: ["linux/amd64"])
        #expect(
            try await other.lease(
                agentId: agent.id,
                poll: PollRequest(platforms: agent.platforms, labels: [:], builders: ["buildah"], version: "t")) == nil)
        let view = try await other.build(id: build.id)
        #expect(view.state == .failed)
        #expect(view.jobs[0].reason?.contains("cannot be decrypted") == true, "\(view)")
    }

    @Test func specsFromBeforeV6LoseTheirValuesAndRunningOnesKeepThemSealed() async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("manifold-legacy-\(UUID())")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let path = directory.appendingPathComponent("manifold.db").path
        let old = try DatabaseQueue(path: path)
        try SQLiteSchema.migrator.migrate(old, upTo: "v4")
        let spec = """
            {"buildArgs":{"TOKEN":"legacy-value","V":"1"},"context":{"digest":"sha256:\(String(repeating: "a", count: 64))",\
            "type":"upload"},"dockerfile":"Dockerfile","image":"r.local/a","labels":{},"platforms":[{"platform":\
            {"architecture":"amd64","os":"linux"}}],"secretBuildArgs":["TOKEN"],"tags":["1"],"timeoutSeconds":60,\
            "allowPartial":false}
            """
        try await old.write { db in
            for (seq, (id, state)) in [("bld_running", "running"), ("bld_done", "failed")].enumerated() {
                try db.execute(
                    sql: """
                        INSERT INTO build (id, image, spec, state, createdAt, updatedAt) VALUES (?, 'r.local/a', ?, ?, 0, 0);
                        INSERT INTO job (id, buildId, buildSeq, platformKey, platform, spec, state, maxAttempts, notBefore)
                        VALUES (?, ?, ?, 'linux/amd64', 'linux/amd64', ?, 'queued', 3, 0)
                        """,
                    arguments: [
                        id, spec, state, "job_\(id)", id, seq + 1,
                        "{\"buildArgs\":{\"TOKEN\":\"platform-value\"},\"platform\":{\"architecture\":\"amd64\",\"os\":\"linux\"}}",
                    ])
            }
        }
        try old.close()

        let key = SecretsKey.generate()
        let store = try Store(path: path, secretsKey: key)
        let rows = try await store.backend.read { db in
            try String.fetchAll(db, sql: "SELECT spec FROM build UNION ALL SELECT spec FROM job")
                + [try String.fetchOne(db, sql: "SELECT legacy FROM build_secret") ?? ""]
        }
        #expect(rows.allSatisfy { !$0.contains("legacy-value") && !$0.contains("platform-value") }, "\(rows)")
        #expect(try await store.hasStoredSecrets(buildId: "bld_running"))
        #expect(try await store.hasStoredSecrets(buildId: "bld_done") == false)
        let agent = try await store.joinAgent(
            JoinRequest(
                name: "a", platforms: [Platform(os: "linux", architecture: "amd64")], labels: [:], builders: [], version: "t"),
            secretHash: "h")
        let lease = try #require(
            try await store.lease(
                agentId: agent.id,
                poll: PollRequest(platforms: agent.platforms, labels: [:], builders: [], version: "t")))
        #expect(lease.spec.buildId == "bld_running")
        #expect(lease.spec.secrets == ["TOKEN": "legacy-value"])
        #expect(lease.spec.buildArgs == ["V": "1"])
    }

    /// Masking a chunk's secrets (reading and decrypting them, scanning the chunk) happens before the write
    /// transaction that stores the chunk, so a build with many long secrets and chatty output never holds the
    /// database writer for it. The probe sees how many of the store's write transactions are open while masking
    /// runs: none (moved into the transaction, it would see one, or not run in this task at all).
    @Test func logMaskingRunsOutsideTheWriteTransaction() async throws {
        let fixture = try await StoreFixture()
        let build = try await submit(fixture, secrets: ["NPM_TOKEN": "npm_secret_value"])
        let agent = try await fixture.join("a", platforms: ["linux/amd64"])
        let lease = try #require(try await fixture.poll(agent))
        let observed = Mutex<[Int]>([])
        let writesBefore = fixture.store.writesCommitted
        try await Store.$maskingProbe.withValue({ open in observed.withLock { $0.append(open) } }) {
            _ = try await fixture.store.appendLog(
                agentId: agent.id, jobId: lease.jobId, epoch: lease.epoch, offset: 0,
                data: Data("echo npm_secret_value\n".utf8))
        }
        #expect(observed.withLock { $0 } == [0], "write transactions open while masking: \(observed.withLock { $0 })")
        #expect(fixture.store.writesCommitted == writesBefore + 1)
        let log = try await fixture.store.readLog(buildId: build.id, platform: "linux/amd64")
        #expect(String(decoding: log.data, as: UTF8.self) == "echo ****************\n")
    }

    // MARK: -

    func submit(
        _ fixture: StoreFixture, secrets: [String: String], buildArgs: [String: String] = [:],
        secretBuildArgs: [String] = [], maxAttempts: Int? = nil
    ) async throws -> BuildView {
        let digest = Digest.compute(of: Data("context \(UUID())".utf8))
        try await fixture.store.recordContext(digest: digest, size: 10)
        return try await fixture.store.submitBuild(
            BuildSpec(
                image: "registry.local:5000/team/app", tags: ["1.0"],
                platforms: [PlatformSpec(platform: Platform(os: "linux", architecture: "amd64"))],
                context: .upload(digest: digest), buildArgs: buildArgs, secrets: secrets, secretBuildArgs: secretBuildArgs,
                maxAttempts: maxAttempts), submittedBy: "t")
    }

    func sealedBytes(_ fixture: StoreFixture, _ buildId: String) async throws -> Data {
        try #require(
            try await fixture.store.backend.read { db in
                try Data.fetchOne(db, sql: "SELECT sealed FROM build_secret WHERE buildId = ?", arguments: [buildId])
            })
    }
}
