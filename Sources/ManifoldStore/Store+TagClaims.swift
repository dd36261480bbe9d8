import Foundation

/// A tag another replica claimed for a push that has not finished: this push waits until that claim is released or
/// runs out.
///
/// Replicas on one database each keep their own pushes of one tag in order, but not each other's: without a claim
/// per tag, a replica could push an older build's list while another pushes a newer one, and the older PUT, landing
/// last, would move the tag backwards.
public struct TagClaimedElsewhere: Error, Sendable, Hashable, CustomStringConvertible {
    public var image: String
    public var tag: String
    /// The build whose push holds the tag.
    public var buildId: String
    /// The replica pushing it.
    public var replica: String
    /// When the claim runs out unless released first (the store's clock).
    public var until: Date

    public var description: String {
        "tag \(tag) of \(image) is being pushed by replica \(replica) for build \(buildId) (claimed until "
            + "\(until.formatted(.iso8601))); this push waits until that push ends or its claim runs out"
    }
}

extension Store {
    /// The holder of the tags an outbox row (a publishing run) pushes.
    static func tagHolder(run id: Int64) -> String { "run:\(id)" }
    /// The holder of the stable child tag an attempt's verification pushes.
    static func tagHolder(attempt epoch: Int64) -> String { "attempt:\(epoch)" }

    /// Claims `tags` of `image` for `holder`'s PUTs until `ttl` from `at`: all of them, or none when another replica
    /// holds one of them with a claim that has not run out (returned). A claim of the same holder (its run taken over
    /// after its replica died) or of this replica (whose own pushes of one tag run one at a time) is taken over.
    static func claimTags(
        _ db: SQLTransaction, image: String, tags: [String], holder: String, buildId: String, replica: String, at: Double,
        ttl: TimeInterval
    ) throws -> TagClaimedElsewhere? {
        guard !tags.isEmpty else { return nil }
        // Every tag's claim in one statement (each is a round trip while the write's locks are held); the first tag
        // in `tags` order that another replica's push holds is the one reported.
        var arguments: SQLArguments = [image]
        for tag in tags { arguments.append(tag) }
        for value in [holder, replica] as [String] { arguments.append(value) }
        arguments.append(at)
        let claims = try SQLRow.fetchAll(
            db,
            sql: """
                SELECT tag, buildId, claimedBy, claimedUntil FROM tag_claim
                WHERE image = ? AND tag IN (\(Array(repeating: "?", count: tags.count).joined(separator: ", ")))
                    AND holder <> ? AND claimedBy <> ? AND claimedUntil > ?
                """, arguments: arguments)
        let held = Dictionary(claims.map { ($0["tag"] as String, $0) }, uniquingKeysWith: { first, _ in first })
        if let tag = tags.first(where: { held[$0] != nil }), let claim = held[tag] {
            return TagClaimedElsewhere(
                image: image, tag: tag, buildId: claim["buildId"], replica: claim["claimedBy"],
                until: Date(timeIntervalSince1970: claim["claimedUntil"]))
        }
        for tag in tags {
            try db.execute(
                sql: """
                    INSERT INTO tag_claim (image, tag, holder, buildId, claimedBy, claimedUntil) VALUES (?, ?, ?, ?, ?, ?)
                    ON CONFLICT (image, tag) DO UPDATE SET holder = excluded.holder, buildId = excluded.buildId,
                        claimedBy = excluded.claimedBy, claimedUntil = excluded.claimedUntil
                    """, arguments: [image, tag, holder, buildId, replica, at + ttl])
        }
        return nil
    }

    /// Ends `holder`'s claims that this replica holds (its PUTs are over: landed, failed or not started), and makes
    /// the publishing runs that waited for a tag of the same image due at once.
    ///
    /// Runs inside writes scoped to one build, beside other builds' on PostgreSQL, and then touches other builds'
    /// outbox rows: under the image's lock (``SQLTransaction/lockImage(_:)``), which every write that reads the image's
    /// claims or sets `tagWait` takes too (``claimPublication(id:listDigest:tags:)``), so a run that starts waiting for
    /// a tag and the end of the push it waits for never pass each other unseen. A claim taken over by another holder
    /// between the read of the images and the lock is simply not deleted.
    static func releaseTags(_ db: SQLTransaction, holder: String, replica: String, at: Double) throws {
        let images = try String.fetchAll(
            db, sql: "SELECT DISTINCT image FROM tag_claim WHERE holder = ? AND claimedBy = ?", arguments: [holder, replica])
        guard !images.isEmpty else { return }
        for image in images { try db.lockImage(image) }
        try db.execute(sql: "DELETE FROM tag_claim WHERE holder = ? AND claimedBy = ?", arguments: [holder, replica])
        for image in images {
            try db.execute(
                sql: """
                    UPDATE outbox SET notBefore = ?, tagWait = NULL
                    WHERE tagWait = ? AND state IN ('pending', 'pushing')
                    """, arguments: [at, image])
        }
    }

    /// Ends the claim on the stable child tag that the verification of attempt `epoch` took in
    /// ``claimChildTag(jobId:epoch:childTag:digest:claim:)``, when its PUT is over and no outcome is recorded (the
    /// PUT failed, or the check stopped), so another replica's push of that tag need not wait for the claim to run
    /// out. Recording the outcome ends the claim too.
    public func releaseChildTag(epoch: Int64) async throws {
        let at = Store.timestamp(now())
        try await write { db in
            try Self.releaseTags(db, holder: Self.tagHolder(attempt: epoch), replica: replica, at: at)
        }
    }
}
