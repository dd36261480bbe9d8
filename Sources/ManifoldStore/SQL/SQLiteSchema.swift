import GRDB

/// Versioned migrations. A migration, once released, never changes: add a new one.
enum SQLiteSchema {
    static let migrator: DatabaseMigrator = {
        var migrator = DatabaseMigrator()
        migrator.registerMigration("v1") { db in
            try db.execute(
                sql: """
                    CREATE TABLE token (
                        id TEXT PRIMARY KEY,
                        name TEXT NOT NULL,
                        role TEXT NOT NULL CHECK (role IN ('admin', 'submitter', 'viewer', 'join')),
                        hash TEXT NOT NULL UNIQUE,
                        createdAt REAL NOT NULL,
                        lastUsedAt REAL,
                        revokedAt REAL
                    );
                    CREATE TABLE agent (
                        id TEXT PRIMARY KEY,
                        name TEXT NOT NULL,
                        secretHash TEXT NOT NULL UNIQUE,
                        platforms TEXT NOT NULL,
                        labels TEXT NOT NULL,
                        builders TEXT NOT NULL,
                        version TEXT,
                        protocolVersion INTEGER,
                        state TEXT NOT NULL CHECK (state IN ('active', 'draining', 'disabled', 'left')),
                        joinedAt REAL NOT NULL,
                        lastSeenAt REAL
                    );
                    CREATE UNIQUE INDEX agent_name ON agent(name) WHERE state != 'left';
                    CREATE TABLE build (
                        seq INTEGER PRIMARY KEY AUTOINCREMENT,
                        id TEXT NOT NULL UNIQUE,
                        image TEXT NOT NULL,
                        spec TEXT NOT NULL,
                        state TEXT NOT NULL,
                        listDigest TEXT,
                        listMediaType TEXT,
                        reason TEXT,
                        submittedBy TEXT,
                        createdAt REAL NOT NULL,
                        updatedAt REAL NOT NULL,
                        finishedAt REAL
                    );
                    CREATE INDEX build_state ON build(state);
                    CREATE TABLE job (
                        seq INTEGER PRIMARY KEY AUTOINCREMENT,
                        id TEXT NOT NULL UNIQUE,
                        buildId TEXT NOT NULL REFERENCES build(id),
                        buildSeq INTEGER NOT NULL,
                        platformKey TEXT NOT NULL,
                        platform TEXT NOT NULL,
                        spec TEXT NOT NULL,
                        state TEXT NOT NULL CHECK (state IN ('queued', 'assigned', 'verifying', 'succeeded', 'failed', 'cancelled')),
                        attempts INTEGER NOT NULL DEFAULT 0,
                        retryBase INTEGER NOT NULL DEFAULT 0,
                        maxAttempts INTEGER NOT NULL,
                        notBefore REAL NOT NULL,
                        currentEpoch INTEGER,
                        digest TEXT,
                        imageReference TEXT,
                        reason TEXT,
                        UNIQUE (buildId, platformKey)
                    );
                    CREATE INDEX job_queue ON job(state, buildSeq, seq);
                    CREATE TABLE attempt (
                        epoch INTEGER PRIMARY KEY AUTOINCREMENT,
                        jobId TEXT NOT NULL REFERENCES job(id),
                        number INTEGER NOT NULL,
                        agentId TEXT NOT NULL REFERENCES agent(id),
                        state TEXT NOT NULL
                            CHECK (state IN ('running', 'verifying', 'succeeded', 'failed', 'lost', 'cancelled')),
                        phase TEXT,
                        cancelRequested INTEGER NOT NULL DEFAULT 0,
                        leaseExpiresAt REAL NOT NULL,
                        startedAt REAL NOT NULL,
                        endedAt REAL,
                        exitCode INTEGER,
                        reason TEXT,
                        digest TEXT,
                        imageReference TEXT,
                        logSize INTEGER NOT NULL DEFAULT 0,
                        lastLogLine TEXT
                    );
                    CREATE INDEX attempt_job ON attempt(jobId, epoch);
                    CREATE INDEX attempt_running ON attempt(state, leaseExpiresAt);
                    CREATE TABLE log_chunk (
                        epoch INTEGER NOT NULL REFERENCES attempt(epoch),
                        offset INTEGER NOT NULL,
                        data BLOB NOT NULL,
                        PRIMARY KEY (epoch, offset)
                    );
                    CREATE TABLE event (
                        id INTEGER PRIMARY KEY AUTOINCREMENT,
                        buildId TEXT NOT NULL,
                        jobId TEXT,
                        platform TEXT,
                        type TEXT NOT NULL,
                        data TEXT NOT NULL,
                        createdAt REAL NOT NULL
                    );
                    CREATE INDEX event_build ON event(buildId, id);
                    CREATE TABLE context (
                        digest TEXT PRIMARY KEY,
                        size INTEGER NOT NULL,
                        createdAt REAL NOT NULL
                    );
                    CREATE TABLE outbox (
                        id INTEGER PRIMARY KEY AUTOINCREMENT,
                        buildId TEXT NOT NULL REFERENCES build(id),
                        digestSet TEXT NOT NULL,
                        partial INTEGER NOT NULL DEFAULT 0,
                        state TEXT NOT NULL CHECK (state IN ('pending', 'done', 'failed', 'superseded')),
                        attempts INTEGER NOT NULL DEFAULT 0,
                        notBefore REAL NOT NULL,
                        createdAt REAL NOT NULL,
                        finishedAt REAL,
                        listDigest TEXT,
                        error TEXT,
                        UNIQUE (buildId, digestSet)
                    );
                    CREATE INDEX outbox_pending ON outbox(state, notBefore);
                    """)
        }
        // v2: a digest set may be published again after another list replaced it (the tags must move back), so
        // the outbox keeps one row per publishing run, each with the children it publishes.
        migrator.registerMigration("v2") { db in
            try db.execute(
                sql: """
                    CREATE TABLE outbox_v2 (
                        id INTEGER PRIMARY KEY AUTOINCREMENT,
                        buildId TEXT NOT NULL REFERENCES build(id),
                        digestSet TEXT NOT NULL,
                        children TEXT,
                        partial INTEGER NOT NULL DEFAULT 0,
                        state TEXT NOT NULL CHECK (state IN ('pending', 'done', 'failed', 'superseded')),
                        attempts INTEGER NOT NULL DEFAULT 0,
                        notBefore REAL NOT NULL,
                        createdAt REAL NOT NULL,
                        finishedAt REAL,
                        listDigest TEXT,
                        error TEXT
                    );
                    INSERT INTO outbox_v2 (id, buildId, digestSet, partial, state, attempts, notBefore, createdAt,
                        finishedAt, listDigest, error)
                    SELECT id, buildId, digestSet, partial, state, attempts, notBefore, createdAt, finishedAt, listDigest, error
                    FROM outbox;
                    DROP TABLE outbox;
                    ALTER TABLE outbox_v2 RENAME TO outbox;
                    CREATE INDEX outbox_pending ON outbox(state, notBefore);
                    CREATE INDEX outbox_build ON outbox(buildId, id);
                    """)
        }
        // v3: fencing up to the registry and bounded growth.
        // - attempt.pushTag: the tag only this attempt pushes to; acknowledgedAt: when the agent first proved it
        //   received the lease (heartbeat, log, report), so a grant lost on the way is given back quickly, uncounted.
        // - attempt.lastLogEventAt: job.log events are coalesced per attempt.
        // - tag_owner: which build's list each (image, tag) holds, so an older build never moves a tag back.
        // - outbox 'pushing': the row was re-checked and its tag PUTs are under way; build.notice records a push
        //   that landed after the build was cancelled.
        migrator.registerMigration("v3") { db in
            try db.execute(
                sql: """
                    ALTER TABLE attempt ADD COLUMN pushTag TEXT;
                    ALTER TABLE attempt ADD COLUMN acknowledgedAt REAL;
                    ALTER TABLE attempt ADD COLUMN lastLogEventAt REAL;
                    UPDATE attempt SET acknowledgedAt = startedAt;
                    ALTER TABLE build ADD COLUMN notice TEXT;
                    ALTER TABLE context ADD COLUMN lastUsedAt REAL;
                    CREATE INDEX build_finished ON build(finishedAt) WHERE finishedAt IS NOT NULL;
                    CREATE TABLE tag_owner (
                        image TEXT NOT NULL,
                        tag TEXT NOT NULL,
                        buildId TEXT NOT NULL,
                        buildSeq INTEGER NOT NULL,
                        listDigest TEXT NOT NULL,
                        updatedAt REAL NOT NULL,
                        PRIMARY KEY (image, tag)
                    );
                    CREATE TABLE outbox_v3 (
                        id INTEGER PRIMARY KEY AUTOINCREMENT,
                        buildId TEXT NOT NULL REFERENCES build(id),
                        digestSet TEXT NOT NULL,
                        children TEXT,
                        partial INTEGER NOT NULL DEFAULT 0,
                        state TEXT NOT NULL CHECK (state IN ('pending', 'pushing', 'done', 'failed', 'superseded')),
                        attempts INTEGER NOT NULL DEFAULT 0,
                        notBefore REAL NOT NULL,
                        createdAt REAL NOT NULL,
                        finishedAt REAL,
                        listDigest TEXT,
                        error TEXT
                    );
                    INSERT INTO outbox_v3 SELECT * FROM outbox;
                    DROP TABLE outbox;
                    ALTER TABLE outbox_v3 RENAME TO outbox;
                    CREATE INDEX outbox_pending ON outbox(state, notBefore);
                    CREATE INDEX outbox_build ON outbox(buildId, id);
                    """)
        }
        // v4: retention and storage health.
        // - build.prunedAt: when retention removed the build's logs and events (one build.pruned event remains);
        //   a build retried and finished again after that is pruned again.
        // - attempt.logPrunedAt: when retention removed the attempt's log chunks (logSize keeps the old size).
        // - build_prune_due, attempt_log_kept: what retention still has to look at, so a run never scans history.
        // - health: one row the readiness check rewrites to learn whether the database can be written again.
        migrator.registerMigration("v4") { db in
            try db.execute(
                sql: """
                    ALTER TABLE build ADD COLUMN prunedAt REAL;
                    ALTER TABLE attempt ADD COLUMN logPrunedAt REAL;
                    CREATE INDEX build_prune_due ON build(finishedAt)
                        WHERE finishedAt IS NOT NULL AND (prunedAt IS NULL OR prunedAt < finishedAt);
                    CREATE INDEX attempt_log_kept ON attempt(endedAt) WHERE logPrunedAt IS NULL AND logSize > 0;
                    CREATE INDEX context_last_used ON context(COALESCE(lastUsedAt, createdAt));
                    CREATE TABLE health (
                        id INTEGER PRIMARY KEY CHECK (id = 1),
                        checkedAt REAL NOT NULL
                    );
                    """)
        }
        // v5: least privilege.
        // - pool: the labels imposed on its agents and the platforms they may offer (empty JSON list: any). The
        //   `default` pool imposes nothing; join tokens from before belong to it.
        // - token.pool/expiresAt/usesLeft: a join token joins agents into one pool, until it expires or is used
        //   up (NULL: no limit, as for tokens from before). token.repositories: a JSON list of repository
        //   patterns a submitter or viewer is limited to (NULL: every allowed registry).
        // - agent.pool/fixedPlatforms/fixedLabels: what the agent was given at join; a poll may narrow it only.
        //   Agents from before keep what they had as fixed.
        // - build.submittedByToken: which token submitted it, to cap the unfinished builds per token.
        migrator.registerMigration("v5") { db in
            try db.execute(
                sql: """
                    CREATE TABLE pool (
                        name TEXT PRIMARY KEY,
                        labels TEXT NOT NULL,
                        platforms TEXT NOT NULL,
                        createdAt REAL NOT NULL
                    );
                    INSERT INTO pool (name, labels, platforms, createdAt)
                    VALUES ('default', '{}', '[]', (julianday('now') - 2440587.5) * 86400.0);
                    ALTER TABLE token ADD COLUMN pool TEXT REFERENCES pool(name);
                    ALTER TABLE token ADD COLUMN expiresAt REAL;
                    ALTER TABLE token ADD COLUMN usesLeft INTEGER;
                    ALTER TABLE token ADD COLUMN repositories TEXT;
                    UPDATE token SET pool = 'default' WHERE role = 'join';
                    CREATE INDEX token_pool ON token(pool) WHERE pool IS NOT NULL;
                    ALTER TABLE agent ADD COLUMN pool TEXT REFERENCES pool(name);
                    ALTER TABLE agent ADD COLUMN fixedPlatforms TEXT;
                    ALTER TABLE agent ADD COLUMN fixedLabels TEXT;
                    UPDATE agent SET pool = 'default', fixedPlatforms = platforms, fixedLabels = labels;
                    CREATE INDEX agent_pool ON agent(pool) WHERE state != 'left';
                    ALTER TABLE build ADD COLUMN submittedByToken TEXT;
                    CREATE INDEX build_token_unfinished ON build(submittedByToken) WHERE finishedAt IS NULL;
                    """)
        }
        // v6: build secrets leave the plain-text specs.
        // - build.secretNames: the names of the build's secrets (JSON array), NULL when it has none; the values are
        //   never in build.spec or job.spec.
        // - build_secret: the values, AES-GCM sealed with the state directory's secrets key and the build id
        //   (`sealed`); `legacy` holds, for a build still running at the upgrade, the plain values taken out of its
        //   spec, which the store seals at its next start.
        // - build_secret_erase: whatever path makes a build final erases its secrets, first overwriting them with
        //   zeros in place, so the page that held them keeps nothing of them.
        // Specs from before keep no secret values either: they are taken out here.
        migrator.registerMigration("v6") { db in
            try db.execute(
                sql: """
                    ALTER TABLE build ADD COLUMN secretNames TEXT;
                    CREATE TABLE build_secret (
                        buildId TEXT PRIMARY KEY REFERENCES build(id) ON DELETE CASCADE,
                        sealed BLOB,
                        legacy TEXT
                    );
                    CREATE TRIGGER build_secret_erase AFTER UPDATE OF state ON build
                    WHEN NEW.state IN ('published', 'partially-published', 'failed', 'cancelled')
                    BEGIN
                        UPDATE build_secret SET sealed = zeroblob(length(sealed)),
                            legacy = zeroblob(length(CAST(legacy AS BLOB)))
                        WHERE buildId = NEW.id;
                        DELETE FROM build_secret WHERE buildId = NEW.id;
                    END;
                    """)
            try Store.takeOutLegacySecrets(GRDBTransaction(db))
        }
        // v7: contexts in the database, for replicas on PostgreSQL (see Store+SharedContexts); the embedded
        // coordinator keeps them in files and leaves this table empty.
        migrator.registerMigration("v7") { db in
            try db.execute(
                sql: """
                    CREATE TABLE context_chunk (
                        digest TEXT NOT NULL,
                        byteOffset INTEGER NOT NULL,
                        data BLOB NOT NULL,
                        createdAt REAL NOT NULL,
                        PRIMARY KEY (digest, byteOffset)
                    );
                    """)
        }
        // v8: a replica claims an outbox row right before its tag PUTs (`claimedBy`, until `claimedUntil`); another
        // replica leaves the row alone until the claim is released or expires.
        migrator.registerMigration("v8") { db in
            try db.execute(
                sql: """
                    ALTER TABLE outbox ADD COLUMN claimedBy TEXT;
                    ALTER TABLE outbox ADD COLUMN claimedUntil REAL;
                    """)
        }
        // v9: claims instead of singletons, for replicas on PostgreSQL. A replica claims a report before checking it
        // in the registry (`verifyClaimedBy` until `verifyClaimedUntil`); every claim bumps `verifyClaimToken`, so a
        // replica whose claim was taken over after it expired is fenced off. `periodic_task` records when a task
        // every replica runs (retention) last ran and where, so it runs once per interval across replicas.
        migrator.registerMigration("v9") { db in
            try db.execute(
                sql: """
                    ALTER TABLE attempt ADD COLUMN verifyClaimedBy TEXT;
                    ALTER TABLE attempt ADD COLUMN verifyClaimedUntil REAL;
                    ALTER TABLE attempt ADD COLUMN verifyClaimToken INTEGER NOT NULL DEFAULT 0;
                    CREATE TABLE periodic_task (
                        name TEXT PRIMARY KEY,
                        lastRunAt REAL NOT NULL,
                        runBy TEXT NOT NULL
                    );
                    """)
        }
        // v10: who may read a context. `context_upload` records each token that uploaded a digest (the bytes are
        // content addressed, so a second team uploading the same bytes gets its own row); `build.contextDigest` is
        // the uploaded context a build uses, so a token may also read the contexts of builds its scopes cover.
        // Retention deletes a context's upload rows with the context.
        migrator.registerMigration("v10") { db in
            try db.execute(
                sql: """
                    CREATE TABLE context_upload (
                        digest TEXT NOT NULL,
                        tokenId TEXT NOT NULL,
                        uploadedAt REAL NOT NULL,
                        PRIMARY KEY (digest, tokenId)
                    );
                    ALTER TABLE build ADD COLUMN contextDigest TEXT;
                    UPDATE build SET contextDigest = json_extract(spec, '$.context.digest')
                    WHERE json_extract(spec, '$.context.type') = 'upload';
                    CREATE INDEX build_context ON build(contextDigest) WHERE contextDigest IS NOT NULL;
                    """)
        }
        // v11: a claim per tag for its PUTs, so replicas never push one tag at the same time (an older build's PUT
        // landing after a newer one's would move the tag backwards). `tag_claim` names the push holding each (image,
        // tag) — an outbox row (`run:ID`) or an attempt's child-tag PUT (`attempt:EPOCH`) — its replica and until when;
        // a claim is released when the PUTs end and runs out if its replica dies. `outbox.tagWait` is the image whose
        // tag claim a run waits for: releasing a claim of that image makes the run due at once.
        migrator.registerMigration("v11") { db in
            try db.execute(
                sql: """
                    CREATE TABLE tag_claim (
                        image TEXT NOT NULL,
                        tag TEXT NOT NULL,
                        holder TEXT NOT NULL,
                        buildId TEXT NOT NULL,
                        claimedBy TEXT NOT NULL,
                        claimedUntil REAL NOT NULL,
                        PRIMARY KEY (image, tag)
                    );
                    CREATE INDEX tag_claim_holder ON tag_claim(holder);
                    ALTER TABLE outbox ADD COLUMN tagWait TEXT;
                    """)
        }
        // v12: the agent closes an attempt's log once it has sent all of it (it reports before the rest of the log),
        // so followers of the log end when it is complete rather than when the attempt ends.
        migrator.registerMigration("v12") { db in
            try db.execute(sql: "ALTER TABLE attempt ADD COLUMN logClosed INTEGER NOT NULL DEFAULT 0")
        }
        // v13: the W3C trace context of the build's root span, so spans made later (on any replica, after a restart)
        // join the build's trace. NULL when tracing was off at submission.
        migrator.registerMigration("v13") { db in
            try db.execute(sql: "ALTER TABLE build ADD COLUMN traceparent TEXT")
        }
        return migrator
    }()
}
