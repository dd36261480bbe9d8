import Foundation
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

/// What the publisher may do right before moving tags, decided in one transaction with the outbox row.
public enum PublicationClaim: Sendable, Hashable {
    /// Push these tags (tags a later-submitted build holds are left out, with a `tag.kept` event).
    case push(tags: [String])
    /// Push nothing: the run was superseded or its build cancelled since it was read.
    case abandon(reason: String)
    /// Push nothing now: another replica claimed the run for its tag PUTs until `until`; it is left to that
    /// replica, and comes back only if that claim expires unfinished.
    case claimedElsewhere(replica: String, until: Date)
    /// Push nothing now: another replica is pushing `tag` for another build (see ``TagClaimedElsewhere``). The run
    /// waits (a `tag.waiting` event) and becomes due again when that push ends or its claim runs out.
    case waitForTag(TagClaimedElsewhere)
}

/// The due outbox rows: those that can be published, and those that cannot even be read (logged and failed,
/// never allowed to stall the queue).
public struct DuePublications: Sendable {
    public var ready: [Publication] = []
    public var unreadable: [(id: Int64, buildId: String, error: String)] = []
}

extension Store {
    /// Publications that are due, oldest first. Rows left pending or pushing by a crash are returned again, so
    /// publishing resumes on start; pushing the same bytes twice is harmless at the registry.
    public func duePublications() async throws -> DuePublications {
        let at = Store.timestamp(now())
        return try await read { db in
            var due = DuePublications()
            // Rows another replica claimed for its tag PUTs are its own until the claim expires.
            let rows = try SQLRow.fetchAll(
                db,
                sql: """
                    SELECT * FROM outbox WHERE state IN ('pending', 'pushing') AND notBefore <= ?
                        AND (claimedBy IS NULL OR claimedBy = ? OR claimedUntil <= ?)
                    ORDER BY id
                    """,
                arguments: [at, replica, at])
            for row in rows {
                do {
                    due.ready.append(try Self.publication(db, row: row))
                } catch {
                    due.unreadable.append((row["id"], row["buildId"], "\(error)"))
                }
            }
            return due
        }
    }

    private static func publication(_ db: SQLTransaction, row: SQLRow) throws -> Publication {
        let buildId: String = row["buildId"]
        let spec = try buildSpec(db, id: buildId)
        let children: [Publication.Child]
        if let stored = row["children"] as String? {
            // The run publishes exactly the set it was queued for, whatever the jobs did since.
            children = try Store.decode([StoredChild].self, stored).map { child in
                Publication.Child(
                    platform: child.platform, imageReference: child.imageReference, digest: try Digest(parsing: child.digest))
            }
        } else {
            // Rows queued before schema v2 carry no children: the build's succeeded jobs are that set.
            children = try SQLRow.fetchAll(
                db, sql: "SELECT spec, digest, imageReference FROM job WHERE buildId = ? AND state = 'succeeded' ORDER BY seq",
                arguments: [buildId]
            ).map { job in
                let child = try Store.storedChild(job)
                return Publication.Child(
                    platform: child.platform, imageReference: child.imageReference, digest: try Digest(parsing: child.digest))
            }
        }
        return Publication(
            id: row["id"], buildId: buildId, image: spec.image, tags: spec.tags, children: children,
            partial: (row["partial"] as Int) != 0, attempts: row["attempts"])
    }

    /// The next time a pending publication becomes due (after a backoff), if any, leaving out the rows `excluding`
    /// names: a caller already handling those (running them, or waiting for room) must not be woken again by them.
    public func nextPublicationTime(excluding: Set<Int64> = []) async throws -> Date? {
        let ids = excluding.sorted()
        return try await read { db in
            let filter = ids.isEmpty ? "" : " AND id NOT IN (\(ids.map { _ in "?" }.joined(separator: ",")))"
            // A row another replica claimed is due again when the claim runs out, if it is still unfinished then.
            var arguments: SQLArguments = [replica]
            for id in ids { arguments.append(id) }
            return Store.date(
                try Double.fetchOne(
                    db,
                    sql: """
                        SELECT MIN(CASE WHEN claimedBy IS NOT NULL AND claimedBy <> ? AND claimedUntil > notBefore
                            THEN claimedUntil ELSE notBefore END)
                        FROM outbox WHERE state IN ('pending', 'pushing')
                        """ + filter,
                    arguments: arguments))
        }
    }

    /// Re-checks a publishing run right before its tag PUTs and takes the tags it may move.
    ///
    /// The run must still be current (not superseded by a retry) and its build still publishing (not cancelled);
    /// otherwise nothing is pushed. A tag whose list comes from a build submitted later than this one is kept
    /// where it is (`tag.kept` event): tags never move backwards across builds. The tags left to push are claimed
    /// for this run's PUTs (all of them or none): while another replica's push holds one of them, nothing is pushed
    /// and the run waits for it (``PublicationClaim/waitForTag(_:)``), since two replicas' PUTs of one tag could land
    /// in either order. The row becomes `pushing`, so a cancel from now on is answered with "a push is under way" and
    /// a push that lands is recorded.
    public func claimPublication(id: Int64, listDigest: Digest, tags: [String]) async throws -> PublicationClaim {
        let at = Store.timestamp(now())
        return try await write(.buildOfPublication(id)) { db -> PublicationClaim in
            guard let row = try Self.publishingRun(db, id: id) else {
                throw StoreError.notFound(kind: "publication", id: "\(id)")
            }
            let state: String = row["state"]
            guard state == "pending" || state == "pushing" else {
                return .abandon(reason: "the publishing run is \(state)")
            }
            // Fenced: while another replica's claim runs, only that replica moves the tags.
            if state == "pushing", let holder = row["claimedBy"] as String?, holder != replica,
                let until = row["claimedUntil"] as Double?, until > at
            {
                return .claimedElsewhere(replica: holder, until: Date(timeIntervalSince1970: until))
            }
            let buildId: String = row["buildId"]
            guard let buildState = row["buildState"] as String?, let seq = row["buildSeq"] as Int64?,
                let image = row["buildImage"] as String?
            else { throw StoreError.notFound(kind: "build", id: buildId) }
            // Everything below may read the image's tags; what was read above is this build's.
            try db.lockImage(image)
            /// Ends the run unpushed. A run that had already started its tag PUTs (and failed midway) may have
            /// moved some tags: that is recorded, never silent.
            func abandon(_ reason: String, kind: String) throws -> PublicationClaim {
                try db.execute(sql: "UPDATE outbox SET state = 'superseded', finishedAt = ? WHERE id = ?", arguments: [at, id])
                try Self.releaseTags(db, holder: Self.tagHolder(run: id), replica: replica, at: at)
                if state == "pushing" {
                    let notice =
                        "tags \(tags.joined(separator: ", ")) may already point at list \(listDigest): a push that failed "
                        + "midway had started before \(reason)"
                    try db.execute(
                        sql: "UPDATE build SET notice = ?, updatedAt = ? WHERE id = ?", arguments: [notice, at, buildId])
                    try appendEvent(
                        db, buildId: buildId, type: kind,
                        data: ["digest": listDigest.description, "tags": tags.joined(separator: ","), "reason": notice])
                }
                return .abandon(reason: reason)
            }
            guard (row["newerRun"] as Int) == 0 else {
                return try abandon("a newer publishing run of build \(buildId) replaced it", kind: "list.pushed_superseded")
            }
            guard buildState == BuildState.publishing.rawValue else {
                return try abandon(
                    "build \(buildId) was \(buildState)",
                    kind: buildState == BuildState.cancelled.rawValue ? "list.pushed_after_cancel" : "list.pushed_superseded")
            }
            var claimed: [String] = []
            let owners = try Self.tagOwnerRows(db, image: image, tags: tags)
            for tag in tags {
                if let owner = owners[tag], (owner["buildSeq"] as Int64) > seq {
                    let holder: String = owner["buildId"]
                    try appendEvent(
                        db, buildId: buildId, type: "tag.kept",
                        data: ["tag": tag, "heldBy": holder, "reason": "tag \(tag) kept: held by \(holder) submitted later"])
                    continue
                }
                claimed.append(tag)
            }
            if let held = try Self.claimTags(
                db, image: image, tags: claimed, holder: Self.tagHolder(run: id), buildId: buildId, replica: replica, at: at,
                ttl: settings.publicationClaimTTL)
            {
                // Due again when that push ends (its release wakes runs waiting on the image) or its claim runs out.
                try db.execute(
                    sql: "UPDATE outbox SET notBefore = \(db.greatest("notBefore", "?")), tagWait = ? WHERE id = ?",
                    arguments: [Store.timestamp(held.until), image, id])
                try appendEvent(
                    db, buildId: buildId, type: "tag.waiting",
                    data: [
                        "tag": held.tag, "heldBy": held.buildId, "replica": held.replica,
                        "until": held.until.formatted(.iso8601), "reason": held.description,
                    ])
                return .waitForTag(held)
            }
            try db.execute(
                sql: "UPDATE outbox SET state = 'pushing', claimedBy = ?, claimedUntil = ?, tagWait = NULL WHERE id = ?",
                arguments: [replica, at + settings.publicationClaimTTL, id])
            return .push(tags: claimed)
        }
    }

    /// Whether the verifier may point the stable child tag `childTag` of `image` at `digest` for attempt `epoch`,
    /// decided right before the PUT: the attempt is still its job's current one and being verified, this replica
    /// still holds `claim` on the report (no other replica took it over; see
    /// ``claimVerification(jobId:epoch:)``), its build was not cancelled, and no build submitted later holds the
    /// tag (then a `tag.kept` event says so). When allowed, the build becomes the tag's owner and the tag is claimed
    /// for this attempt's PUT until ``releaseChildTag(epoch:)``, the recording of the check's outcome
    /// (``recordVerification(jobId:epoch:outcome:canonicalReference:claim:)``) or one verification claim TTL. While another
    /// replica's push holds the tag, throws ``TagClaimedElsewhere``: the check waits and tries again, since two
    /// replicas' PUTs of one tag could land in either order.
    public func claimChildTag(
        jobId: String, epoch: Int64, childTag: String, digest: Digest, claim: VerificationClaim? = nil
    ) async throws -> Bool {
        let at = Store.timestamp(now())
        return try await write(.buildOfJob(jobId)) { db -> Bool in
            guard
                let row = try SQLRow.fetchOne(
                    db,
                    sql: """
                        SELECT build.id AS buildId, build.seq, build.image, build.state AS buildState,
                            attempt.verifyClaimedBy, attempt.verifyClaimedUntil, attempt.verifyClaimToken FROM attempt
                        JOIN job ON job.id = attempt.jobId AND job.currentEpoch = attempt.epoch
                        JOIN build ON build.id = job.buildId
                        WHERE attempt.epoch = ? AND attempt.jobId = ? AND attempt.state = 'verifying'
                        """, arguments: [epoch, jobId]),
                (row["buildState"] as String) != BuildState.cancelled.rawValue,
                self.mayActOnVerification(row, claim: claim, at: at)
            else { return false }
            let buildId: String = row["buildId"]
            let seq: Int64 = row["seq"]
            let image: String = row["image"]
            try db.lockImage(image)
            if let owner = try SQLRow.fetchOne(
                db, sql: "SELECT buildId, buildSeq FROM tag_owner WHERE image = ? AND tag = ?", arguments: [image, childTag]),
                (owner["buildSeq"] as Int64) > seq
            {
                let holder: String = owner["buildId"]
                try appendEvent(
                    db, buildId: buildId, jobId: jobId, type: "tag.kept",
                    data: [
                        "tag": childTag, "heldBy": holder, "reason": "tag \(childTag) kept: held by \(holder) submitted later",
                    ])
                return false
            }
            if let held = try Self.claimTags(
                db, image: image, tags: [childTag], holder: Self.tagHolder(attempt: epoch), buildId: buildId, replica: replica,
                at: at, ttl: settings.verificationClaimTTL)
            {
                throw held
            }
            try Self.recordTagOwners(
                db, image: image, tags: [childTag], buildId: buildId, seq: seq, digest: digest.description, at: at)
            return true
        }
    }

    /// Records that `tags` of `image` now hold `digest` from build `buildId` (its submission `seq`), unless a build
    /// submitted later holds one already. Written when the tag PUTs landed, so a push refused for good claims nothing.
    static func recordTagOwners(
        _ db: SQLTransaction, image: String, tags: [String], buildId: String, seq: Int64, digest: String, at: Double
    ) throws {
        for tag in tags {
            try db.execute(
                sql: """
                    INSERT INTO tag_owner (image, tag, buildId, buildSeq, listDigest, updatedAt) VALUES (?, ?, ?, ?, ?, ?)
                    ON CONFLICT (image, tag) DO UPDATE SET buildId = excluded.buildId, buildSeq = excluded.buildSeq,
                        listDigest = excluded.listDigest, updatedAt = excluded.updatedAt
                    WHERE excluded.buildSeq >= tag_owner.buildSeq
                    """, arguments: [image, tag, buildId, seq, digest, at])
        }
    }

    /// Outbox row `id` with what claiming and recording it need besides, in one statement (each is a round trip while
    /// the write's locks are held): its build's `buildState`, `buildSeq` and `buildImage` (NULL when the build is
    /// gone) and `newerRun`, 1 when a later run of the build is queued or under way (a retry's new digest set).
    static func publishingRun(_ db: SQLTransaction, id: Int64) throws -> SQLRow? {
        try SQLRow.fetchOne(
            db,
            sql: """
                SELECT outbox.*, build.state AS buildState, build.seq AS buildSeq, build.image AS buildImage,
                    CASE WHEN EXISTS (
                        SELECT 1 FROM outbox AS newer WHERE newer.buildId = outbox.buildId AND newer.id > outbox.id
                            AND newer.state IN ('pending', 'pushing')) THEN 1 ELSE 0 END AS newerRun
                FROM outbox LEFT JOIN build ON build.id = outbox.buildId WHERE outbox.id = ?
                """, arguments: [id])
    }

    /// The `tag_owner` rows of `tags` of `image`, by tag, in one statement.
    static func tagOwnerRows(_ db: SQLTransaction, image: String, tags: [String]) throws -> [String: SQLRow] {
        guard !tags.isEmpty else { return [:] }
        var arguments: SQLArguments = [image]
        for tag in tags { arguments.append(tag) }
        let rows = try SQLRow.fetchAll(
            db,
            sql: "SELECT tag, buildId, buildSeq FROM tag_owner WHERE image = ? AND tag IN ("
                + Array(repeating: "?", count: tags.count).joined(separator: ", ") + ")",
            arguments: arguments)
        return Dictionary(rows.map { ($0["tag"] as String, $0) }, uniquingKeysWith: { first, _ in first })
    }

    /// Which build's list each tag of `image` holds, as the publisher recorded it.
    public func tagOwners(image: String) async throws -> [String: (buildId: String, listDigest: String)] {
        try await read { db in
            var owners: [String: (buildId: String, listDigest: String)] = [:]
            for row in try SQLRow.fetchAll(
                db, sql: "SELECT tag, buildId, listDigest FROM tag_owner WHERE image = ?", arguments: [image])
            {
                owners[row["tag"]] = (row["buildId"], row["listDigest"])
            }
            return owners
        }
    }

    /// Records a published list under `tags` (those the claim allowed). Only the row's first completion counts
    /// (exactly once per run). A push that landed after its build was cancelled, or after a retry replaced the
    /// run, is never silent: it is recorded as an event and in the build's notice.
    public func publicationSucceeded(id: Int64, listDigest: Digest, mediaType: String, tags: [String]) async throws {
        let at = Store.timestamp(now())
        try await write(.buildOfPublication(id)) { db in
            guard let row = try Self.publishingRun(db, id: id) else {
                throw StoreError.notFound(kind: "publication", id: "\(id)")
            }
            let rowState: String = row["state"]
            guard rowState == "pending" || rowState == "pushing" else { return }
            let buildId: String = row["buildId"]
            guard let state = row["buildState"] as String?, let seq = row["buildSeq"] as Int64?,
                let image = row["buildImage"] as String?
            else { throw StoreError.notFound(kind: "build", id: buildId) }
            try db.lockImage(image)
            try db.execute(
                sql: "UPDATE outbox SET state = 'done', listDigest = ?, finishedAt = ?, attempts = attempts + 1 WHERE id = ?",
                arguments: [listDigest.description, at, id])
            let final: BuildState = (row["partial"] as Int) != 0 ? .partiallyPublished : .published
            let current = BuildState(rawValue: state) ?? .failed
            let tagList = tags.joined(separator: ",")
            // The tags hold this list now, whatever happened to the build meanwhile.
            try Self.recordTagOwners(
                db, image: image, tags: tags, buildId: buildId, seq: seq, digest: listDigest.description, at: at)
            try Self.releaseTags(db, holder: Self.tagHolder(run: id), replica: replica, at: at)
            guard current == .publishing, (row["newerRun"] as Int) == 0 else {
                // Cancelled or retried while the push was under way: the list is live under these tags; say so.
                let why = current == .cancelled ? "after the build was cancelled" : "after a retry replaced its publishing run"
                let notice =
                    "list \(listDigest) was pushed to \(tags.isEmpty ? "no tag" : tags.joined(separator: ", ")) \(why): "
                    + "the push was already under way"
                try db.execute(
                    sql: "UPDATE build SET notice = ?, updatedAt = ? WHERE id = ?", arguments: [notice, at, buildId])
                try appendEvent(
                    db, buildId: buildId,
                    type: current == .cancelled ? "list.pushed_after_cancel" : "list.pushed_superseded",
                    data: ["digest": listDigest.description, "mediaType": mediaType, "tags": tagList, "reason": notice])
                return
            }
            try db.execute(
                sql: "UPDATE build SET state = ?, listDigest = ?, listMediaType = ?, updatedAt = ?, finishedAt = ? WHERE id = ?",
                arguments: [final.rawValue, listDigest.description, mediaType, at, at, buildId])
            try appendEvent(
                db, buildId: buildId, type: "list.published",
                data: [
                    "digest": listDigest.description, "mediaType": mediaType, "tags": tagList,
                    "partial": final == .partiallyPublished ? "true" : "false",
                ])
        }
    }

    /// Records a failed publishing attempt: retried with capped backoff while `retryable` (a registry outage
    /// does not fail a build; `maxAttempts` nil retries until it is back or the build is cancelled), else the
    /// build fails with the registry's reason.
    public func publicationFailed(id: Int64, error: String, retryable: Bool, maxAttempts: Int? = nil) async throws {
        let at = now()
        try await write(.buildOfPublication(id)) { db in
            guard let row = try SQLRow.fetchOne(db, sql: "SELECT * FROM outbox WHERE id = ?", arguments: [id]),
                ["pending", "pushing"].contains(row["state"] as String)
            else { return }
            let buildId: String = row["buildId"]
            let attempts = (row["attempts"] as Int) + 1
            // No PUT of this run is under way any more: another replica's push of its tags need not wait.
            try Self.releaseTags(db, holder: Self.tagHolder(run: id), replica: replica, at: Store.timestamp(at))
            if retryable && attempts < (maxAttempts ?? Int.max) {
                let retryAt = at.addingTimeInterval(settings.backoff(afterAttempt: attempts))
                // A run whose tag PUTs started stays `pushing`: some tags may have moved, and a cancel or retry
                // meanwhile must be able to tell.
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
        try await read { db in
            func counts(_ table: String) throws -> [String: Int] {
                Dictionary(
                    uniqueKeysWithValues: try SQLRow.fetchAll(db, sql: "SELECT state, COUNT(*) AS n FROM \(table) GROUP BY state")
                        .map {
                            ($0["state"] as String, $0["n"] as Int)
                        })
            }
            return (try counts("build"), try counts("job"), try counts("agent"))
        }
    }

    /// Queued jobs by platform (normalized, as agents are matched to them), for the queue depth gauge.
    public func queuedJobsByPlatform() async throws -> [String: Int] {
        try await read { db in
            Dictionary(
                uniqueKeysWithValues: try SQLRow.fetchAll(
                    db, sql: "SELECT platformKey, COUNT(*) AS n FROM job WHERE state = 'queued' GROUP BY platformKey"
                ).map { ($0["platformKey"] as String, $0["n"] as Int) })
        }
    }
}
