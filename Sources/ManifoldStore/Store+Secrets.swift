import Foundation
import ManifoldAPI
import ManifoldCore

/// Build secrets at rest: sealed with ``SecretsKey`` in `build_secret`, opened only to hand a lease to the agent
/// of the job and to mask log chunks, erased (overwritten, then deleted) when the build becomes final.
extension Store {
    /// What reading a build's stored secrets gave.
    enum StoredSecrets {
        case none
        case secrets([String: String])
        /// The build has secrets but they cannot be used; the reason says why and what to do.
        case unusable(String)
    }

    /// The secrets of `buildId`, decrypted; `namesText` is the build's `secretNames` column (nil: no secrets).
    func openSecrets(_ db: SQLTransaction, buildId: String, secretNames namesText: String?) throws -> StoredSecrets {
        guard let namesText else { return .none }
        let names = try Store.decode([String].self, namesText)
        guard
            let row = try SQLRow.fetchOne(
                db, sql: "SELECT sealed, legacy FROM build_secret WHERE buildId = ?", arguments: [buildId])
        else {
            return .unusable(
                "the build's secrets (\(names.joined(separator: ", "))) were erased when it finished; retry with them "
                    + "again (manifold build retry --secret NAME) or submit the build again")
        }
        if let legacy = row["legacy"] as String? { return .secrets(try Store.decode([String: String].self, legacy)) }
        guard let sealed = row["sealed"] as Data?, let secretsKey else {
            return .unusable("this coordinator has no secrets key to decrypt the build's secrets")
        }
        do {
            return .secrets(try secretsKey.open(sealed, buildId: buildId))
        } catch {
            return .unusable(error.description)
        }
    }

    /// Seals `secrets` for `buildId`, or explains why this store cannot keep secrets.
    func seal(_ secrets: [String: String], buildId: String) throws -> Data {
        guard let secretsKey else {
            throw StoreError.invalid(
                field: "secrets", message: "this coordinator was started without a secrets key and cannot keep secrets")
        }
        return try secretsKey.seal(secrets, buildId: buildId)
    }

    /// Deletes the stored secrets of `buildId`; SQLite first overwrites them with zeros in place (with
    /// `secure_delete` its pages then keep nothing of them). PostgreSQL writes a new row version for any update, so
    /// there the row is deleted and its old version is gone once (auto)vacuum reclaims it.
    static func eraseSecrets(_ db: SQLTransaction, buildId: String) throws {
        if db.dialect == .sqlite {
            try Self.zeroSecrets(db, buildId: buildId)
        }
        try db.execute(sql: "DELETE FROM build_secret WHERE buildId = ?", arguments: [buildId])
    }

    private static func zeroSecrets(_ db: SQLTransaction, buildId: String) throws {
        try db.execute(
            sql: """
                UPDATE build_secret SET sealed = zeroblob(length(sealed)), legacy = zeroblob(length(CAST(legacy AS BLOB)))
                WHERE buildId = ?
                """, arguments: [buildId])
    }

    /// Whether `buildId` still holds stored secrets (sealed or legacy), for checks and tests.
    public func hasStoredSecrets(buildId: String) async throws -> Bool {
        try await read { db in
            try Bool.fetchOne(db, sql: "SELECT 1 FROM build_secret WHERE buildId = ?", arguments: [buildId]) ?? false
        }
    }

    /// The values to mask in log chunks of `jobId`'s build (at least 3 bytes each, longest first), read and
    /// decrypted outside the write transaction.
    func maskingNeedles(jobId: String) async throws -> [Data] {
        let stored = try await read { db -> (buildId: String, sealed: Data?, legacy: String?)? in
            try SQLRow.fetchOne(
                db,
                sql: """
                    SELECT build_secret.buildId, build_secret.sealed, build_secret.legacy FROM job
                    JOIN build_secret ON build_secret.buildId = job.buildId WHERE job.id = ?
                    """, arguments: [jobId]
            ).map { ($0["buildId"], $0["sealed"], $0["legacy"]) }
        }
        guard let stored else { return [] }
        let secrets: [String: String]
        if let legacy = stored.legacy {
            secrets = (try? Store.decode([String: String].self, legacy)) ?? [:]
        } else if let sealed = stored.sealed, let secretsKey {
            secrets = (try? secretsKey.open(sealed, buildId: stored.buildId)) ?? [:]
        } else {
            secrets = [:]
        }
        return secrets.values.filter { $0.utf8.count >= 3 }.map { Data($0.utf8) }.sorted { $0.count > $1.count }
    }

    /// Called where a log chunk of a build with secrets is masked, with the number of this store's write transactions
    /// open at that moment; tests bind it to show that masking never holds the database writer.
    @TaskLocal static var maskingProbe: (@Sendable (_ openWriteTransactions: Int) -> Void)? = nil

    /// `data` with the secrets of `jobId`'s build masked: read, decrypted and scanned by the calling task, before
    /// any write transaction, so a chatty build with many long secrets never holds the database writer for it.
    func masked(_ data: Data, jobId: String) async throws -> Data {
        let needles = try await maskingNeedles(jobId: jobId)
        guard !needles.isEmpty else { return data }
        let masked = Self.masking(data, secrets: needles)
        Self.maskingProbe?(openWriteTransactions)
        return masked
    }

    /// `data` with every occurrence of each secret replaced by as many `*` (so offsets stay true).
    static func masking(_ data: Data, secrets: [Data]) -> Data {
        guard !secrets.isEmpty else { return data }
        var bytes = [UInt8](data)
        for secret in secrets {
            let needle = [UInt8](secret)
            guard let first = needle.first else { continue }
            var index = 0
            while index + needle.count <= bytes.count {
                if bytes[index] == first, bytes[index..<index + needle.count].elementsEqual(needle) {
                    bytes.replaceSubrange(
                        index..<index + needle.count, with: repeatElement(UInt8(ascii: "*"), count: needle.count))
                    index += needle.count
                } else {
                    index += 1
                }
            }
        }
        return Data(bytes)
    }

    /// Seals the plain values the v6 migration took out of builds that were still running, now that the key is
    /// known. Without a key they stay until a coordinator with one starts.
    func sealLegacySecrets(_ db: SQLTransaction) throws {
        guard let secretsKey else { return }
        do {
            let rows = try SQLRow.fetchAll(db, sql: "SELECT buildId, legacy FROM build_secret WHERE legacy IS NOT NULL")
            for row in rows {
                let buildId: String = row["buildId"]
                let sealed = try secretsKey.seal(try Store.decode([String: String].self, row["legacy"]), buildId: buildId)
                try Self.eraseSecrets(db, buildId: buildId)
                try db.execute(
                    sql: "INSERT INTO build_secret (buildId, sealed) VALUES (?, ?)", arguments: [buildId, sealed])
            }
        }
    }

    /// v6: takes the values of `secretBuildArgs` out of every stored spec. A build that is not final keeps them
    /// in `build_secret.legacy` until ``sealLegacySecrets()`` seals them; a per-platform value of a secret build
    /// arg gives way to the build-wide one (secrets are build-wide now).
    static func takeOutLegacySecrets(_ db: SQLTransaction) throws {
        let rows = try SQLRow.fetchAll(db, sql: "SELECT id, spec, state FROM build WHERE spec LIKE '%secretBuildArgs%'")
        for row in rows {
            let buildId: String = row["id"]
            guard let spec = try? Store.decode(BuildSpec.self, row["spec"]), !spec.secretBuildArgs.isEmpty else { continue }
            let (stored, secrets) = spec.separatingSecrets()
            try db.execute(
                sql: "UPDATE build SET spec = ?, secretNames = ? WHERE id = ?",
                arguments: [try Store.json(stored), try Store.json(secrets.keys.sorted()), buildId])
            let jobs = try SQLRow.fetchAll(db, sql: "SELECT id, spec FROM job WHERE buildId = ?", arguments: [buildId])
            for job in jobs {
                guard var platformSpec = try? Store.decode(PlatformSpec.self, job["spec"]),
                    let arguments = platformSpec.buildArgs
                else { continue }
                platformSpec.buildArgs = arguments.filter { !spec.secretBuildArgs.contains($0.key) }
                try db.execute(
                    sql: "UPDATE job SET spec = ? WHERE id = ?", arguments: [try Store.json(platformSpec), job["id"] as String])
            }
            let final = BuildState(rawValue: row["state"]).map(\.isFinal) ?? true
            if !final, !secrets.isEmpty {
                try db.execute(
                    sql: "INSERT INTO build_secret (buildId, legacy) VALUES (?, ?)",
                    arguments: [buildId, try Store.json(secrets)])
            }
        }
    }
}
