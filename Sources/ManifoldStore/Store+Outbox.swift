import Foundation
import GRDB
import ManifoldAPI
import ManifoldCore

/// A list to publish: one row per build and set of verified digests.
public struct Publication: Sendable, Hashable {
    public var id: Int64
    public var buildId: String
    public var image: String
    public var tags: [String]
    /// The verified per-platform images, in the build's platform order.
    public var children: [Child]
    public var partial: Bool
    public var attempts: Int

    public struct Child: Sendable, Hashable {
        public var platform: Platform
        public var imageReference: String
        public var digest: Digest
    }
}

extension Store {
    /// Publications that are due, oldest first. Rows left pending by a crash are returned again, so
    /// publishing resumes on start; pushing the same bytes twice is harmless at the registry.
    public func duePublications() async throws -> [Publication] {
        let at = Store.timestamp(now())
        return try await database.read { db in
            try Row.fetchAll(
                db, sql: "SELECT * FROM outbox WHERE state = 'pending' AND notBefore <= ? ORDER BY id", arguments: [at]
            ).map { row in
                let buildId: String = row["buildId"]
                let spec = try Store.decode(
                    BuildSpec.self,
                    try String.fetchOne(db, sql: "SELECT spec FROM build WHERE id = ?", arguments: [buildId]) ?? "")
                let children: [Publication.Child]
                if let stored = row["children"] as String? {
                    // The run publishes exactly the set it was queued for, whatever the jobs did since.
                    children = try Store.decode([StoredChild].self, stored).map { child in
                        Publication.Child(
                            platform: child.platform, imageReference: child.imageReference,
                            digest: try Digest(parsing: child.digest))
                    }
                } else {
                    // Rows queued before schema v2 carry no children: the build's succeeded jobs are that set.
                    children = try Row.fetchAll(
                        db,
                        sql:
                            "SELECT spec, digest, imageReference FROM job WHERE buildId = ? AND state = 'succeeded' ORDER BY seq",
                        arguments: [buildId]
                    ).map { job in
                        let child = try Store.storedChild(job)
                        return Publication.Child(
                            platform: child.platform, imageReference: child.imageReference,
                            digest: try Digest(parsing: child.digest))
                    }
                }
                return Publication(
                    id: row["id"], buildId: buildId, image: spec.image, tags: spec.tags, children: children,
                    partial: (row["partial"] as Int) != 0, attempts: row["attempts"])
            }
        }
    }

    /// The next time a pending publication becomes due (after a backoff), if any.
    public func nextPublicationTime() async throws -> Date? {
        try await database.read { db in
            Store.date(try Double.fetchOne(db, sql: "SELECT MIN(notBefore) FROM outbox WHERE state = 'pending'"))
        }
    }

    /// Records a published list. Only the row's first completion counts (exactly once per digest set).
    public func publicationSucceeded(id: Int64, listDigest: Digest, mediaType: String) async throws {
        let at = Store.timestamp(now())
        try await write { db in
            guard let row = try Row.fetchOne(db, sql: "SELECT * FROM outbox WHERE id = ?", arguments: [id]) else {
                throw StoreError.notFound(kind: "publication", id: "\(id)")
            }
            guard (row["state"] as String) == "pending" else { return }
            let buildId: String = row["buildId"]
            try db.execute(
                sql: "UPDATE outbox SET state = 'done', listDigest = ?, finishedAt = ?, attempts = attempts + 1 WHERE id = ?",
                arguments: [listDigest.description, at, id])
            let final: BuildState = (row["partial"] as Int) != 0 ? .partiallyPublished : .published
            // Only a build still waiting for this list finishes with it (not one cancelled or retried meanwhile).
            let current = try Self.buildState(db, id: buildId)
            guard current == .publishing else { return }
            try db.execute(
                sql: "UPDATE build SET state = ?, listDigest = ?, listMediaType = ?, updatedAt = ?, finishedAt = ? WHERE id = ?",
                arguments: [final.rawValue, listDigest.description, mediaType, at, at, buildId])
            let spec = try Store.decode(
                BuildSpec.self, try String.fetchOne(db, sql: "SELECT spec FROM build WHERE id = ?", arguments: [buildId]) ?? "")
            try appendEvent(
                db, buildId: buildId, type: "list.published",
                data: [
                    "digest": listDigest.description, "mediaType": mediaType, "tags": spec.tags.joined(separator: ","),
                    "partial": final == .partiallyPublished ? "true" : "false",
                ])
        }
    }

    /// Records a failed publishing attempt: retried with capped backoff while `retryable` (a registry outage
    /// does not fail a build; `maxAttempts` nil retries until it is back or the build is cancelled), else the
    /// build fails with the registry's reason.
    public func publicationFailed(id: Int64, error: String, retryable: Bool, maxAttempts: Int? = nil) async throws {
        let at = now()
        try await write { db in
            guard let row = try Row.fetchOne(db, sql: "SELECT * FROM outbox WHERE id = ?", arguments: [id]),
                (row["state"] as String) == "pending"
            else { return }
            let buildId: String = row["buildId"]
            let attempts = (row["attempts"] as Int) + 1
            if retryable && attempts < (maxAttempts ?? Int.max) {
                let retryAt = at.addingTimeInterval(settings.backoff(afterAttempt: attempts))
                try db.execute(
                    sql: "UPDATE outbox SET attempts = ?, error = ?, notBefore = ? WHERE id = ?",
                    arguments: [attempts, error, Store.timestamp(retryAt), id])
                try appendEvent(db, buildId: buildId, type: "list.retrying", data: ["reason": error, "attempt": "\(attempts)"])
            } else {
                try db.execute(
                    sql: "UPDATE outbox SET state = 'failed', attempts = ?, error = ?, finishedAt = ? WHERE id = ?",
                    arguments: [attempts, error, Store.timestamp(at), id])
                try db.execute(
                    sql:
                        "UPDATE build SET state = 'failed', reason = ?, updatedAt = ?, finishedAt = ? WHERE id = ? AND state = 'publishing'",
                    arguments: ["publishing the list failed: \(error)", Store.timestamp(at), Store.timestamp(at), buildId])
                try appendEvent(
                    db, buildId: buildId, type: "build.failed", data: ["reason": "publishing the list failed: \(error)"])
            }
        }
    }

    /// Counts for `/metrics`: builds and jobs by state.
    public func stateCounts() async throws -> (builds: [String: Int], jobs: [String: Int], agents: [String: Int]) {
        try await database.read { db in
            func counts(_ table: String) throws -> [String: Int] {
                Dictionary(
                    uniqueKeysWithValues: try Row.fetchAll(db, sql: "SELECT state, COUNT(*) AS n FROM \(table) GROUP BY state")
                        .map {
                            ($0["state"] as String, $0["n"] as Int)
                        })
            }
            return (try counts("build"), try counts("job"), try counts("agent"))
        }
    }
}
