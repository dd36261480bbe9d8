import Foundation
import ManifoldAPI
import ManifoldCore
import Synchronization
import Testing

@testable import ManifoldStore

@Suite struct StoreBasicsTests {
    @Test func survivesReopening() async throws {
        let fixture = try await StoreFixture()
        if fixture.kind == .sqlite { #expect(try fixture.store.journalMode() == "wal") }
        let build = try await fixture.submit(platforms: ["linux/amd64"])
        let reopened = try await fixture.reopen()
        #expect(try await reopened.build(id: build.id) == build)
    }

    /// A replica (or a downgraded coordinator) never serves a database migrated by a newer version: its rules
    /// would be wrong for the new schema.
    @Test func aBuildKeepsItsTraceContextForLaterSpans() async throws {
        let fixture = try await StoreFixture()
        let digest = Digest.compute(of: Data("traced context".utf8))
        try await fixture.store.recordContext(digest: digest, size: 10)
        let traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
        let traced = try await fixture.store.submitBuild(
            BuildSpec(
                image: "registry.local:5000/team/app", tags: ["1.0"],
                platforms: [PlatformSpec(platform: try Platform(parsing: "linux/amd64"))], context: .upload(digest: digest)),
            submittedBy: "tester", traceparent: traceparent)
        let untraced = try await fixture.submit(platforms: ["linux/amd64"])
        // Another replica, or this one after a restart, reads it back.
        let reopened = try await fixture.reopen()
        #expect(try await reopened.traceContext(buildId: traced.id) == traceparent)
        #expect(try await reopened.traceContext(buildId: untraced.id) == nil)
        let job = try #require(traced.jobs.first)
        let context = try #require(try await reopened.traceContext(jobId: job.id))
        #expect(context.traceparent == traceparent)
        #expect(abs(context.readySince.timeIntervalSince(fixture.clock.now)) < 1)
        #expect(try await reopened.traceContext(jobId: try #require(untraced.jobs.first).id) == nil)
    }

    @Test func aSchemaNewerThanThisBuildIsRefusedByName() async throws {
        let fixture = try await StoreFixture()
        try await fixture.store.backend.write { db in
            if db.dialect == .sqlite {
                try db.execute(sql: "INSERT INTO grdb_migrations (identifier) VALUES ('v99')")
            } else {
                try db.execute(sql: "INSERT INTO manifold_schema (version, appliedAt) VALUES ('v99', 0)")
            }
        }
        await #expect {
            _ = try await fixture.reopen()
        } throws: { error in
            let text = "\(error)"
            return text.contains("v99") && text.contains("newer than this manifold knows")
                && text.contains(SchemaVersions.known.last!)
        }
    }

    @Test func tokensAreFoundByHashAndRevoked() async throws {
        let fixture = try await StoreFixture()
        let token = try await fixture.store.createToken(name: "ci", role: .submitter, secretHash: "abc")
        #expect(
            try await fixture.store.principal(forSecretHash: "abc")
                == .user(TokenGrant(tokenId: token.id, name: "ci", role: .submitter)))
        #expect(try await fixture.store.principal(forSecretHash: "nope") == nil)
        try await fixture.store.revokeToken(id: token.id)
        #expect(try await fixture.store.principal(forSecretHash: "abc") == nil)
        #expect(try await fixture.store.listTokens().first?.revokedAt != nil)
        await #expect(throws: StoreError.notFound(kind: "token", id: "tok_missing")) {
            try await fixture.store.revokeToken(id: "tok_missing")
        }
    }

    /// Token checks are reads: a flood of unknown tokens never takes the database writer, and a valid token's last
    /// use is written at most once a minute however often it is used.
    @Test func tokenChecksWriteNothingButALastUseAMinute() async throws {
        let fixture = try await StoreFixture()
        let token = try await fixture.store.createToken(name: "ci", role: .submitter, secretHash: "good")
        let before = fixture.store.writesCommitted
        for index in 0..<200 {
            #expect(try await fixture.store.principal(forSecretHash: "guess-\(index)") == nil)
        }
        #expect(fixture.store.writesCommitted == before, "unknown tokens committed writes")
        // The first use records when; every use in the minute after only reads.
        #expect(try await fixture.store.principal(forSecretHash: "good") != nil)
        #expect(fixture.store.writesCommitted == before + 1)
        let firstUse = try #require(try await fixture.store.listTokens().first { $0.id == token.id }?.lastUsedAt)
        for _ in 0..<50 {
            #expect(try await fixture.store.principal(forSecretHash: "good") != nil)
            fixture.clock.advance(1)
        }
        #expect(fixture.store.writesCommitted == before + 1, "uses within a minute committed writes")
        fixture.clock.advance(11)
        #expect(try await fixture.store.principal(forSecretHash: "good") != nil)
        #expect(fixture.store.writesCommitted == before + 2)
        let later = try #require(try await fixture.store.listTokens().first { $0.id == token.id }?.lastUsedAt)
        #expect(later.timeIntervalSince(firstUse) > 60)
    }

    /// The dashboard's session names its token by id and looks it up on every request: nil once revoked or for an
    /// unknown id, refused (naming the expiry) once expired.
    @Test func aTokenIsFoundByIdUntilRevokedOrExpired() async throws {
        let fixture = try await StoreFixture()
        let viewer = try await fixture.store.createToken(
            name: "on-call", role: .viewer, secretHash: "v1",
            options: TokenOptions(repositories: [try RepositoryPattern(parsing: "registry.example.com/team/*")]))
        let grant = try #require(try await fixture.store.grant(tokenId: viewer.id))
        #expect(grant.role == .viewer && grant.name == "on-call")
        #expect(grant.repositories?.map(\.description) == ["registry.example.com/team/*"])
        #expect(try await fixture.store.grant(tokenId: "tok_missing") == nil)
        try await fixture.store.revokeToken(id: viewer.id)
        #expect(try await fixture.store.grant(tokenId: viewer.id) == nil)

        let brief = try await fixture.store.createToken(
            name: "brief", role: .submitter, secretHash: "s1",
            options: TokenOptions(expiresAt: fixture.clock.now.addingTimeInterval(60)))
        #expect(try await fixture.store.grant(tokenId: brief.id)?.expiresAt == fixture.clock.now.addingTimeInterval(60))
        fixture.clock.advance(61)
        await #expect(throws: StoreError.self) { try await fixture.store.grant(tokenId: brief.id) }
    }

    @Test func agentNamesAreUniqueAndValidated() async throws {
        let fixture = try await StoreFixture()
        let agent = try await fixture.join("win-1", platforms: ["windows/amd64:10.0.20348.2227"])
        #expect(agent.platforms.first?.osVersion == "10.0.20348.2227")
        #expect(
            try await fixture.store.principal(forSecretHash: "hash-win-1") == .agent(id: agent.id, name: "win-1", state: .active))
        await #expect { try await fixture.join("win-1", platforms: ["linux/amd64"]) } throws: {
            "\($0)".contains("already joined")
        }
        await #expect { try await fixture.join("bad name!", platforms: ["linux/amd64"]) } throws: {
            $0 as? StoreError == .invalid(field: "name", message: "\"bad name!\" must be 1–100 letters, digits, '-', '_' or '.'")
        }
    }

    @Test func submitValidatesAndNamesTheField() async throws {
        let fixture = try await StoreFixture()
        let digest = Digest.compute(of: Data("never uploaded".utf8))
        var spec = BuildSpec(
            image: "registry.local/app", tags: ["1.0"], platforms: [PlatformSpec(platform: try Platform(parsing: "linux/amd64"))],
            context: .upload(digest: digest))
        await #expect { try await fixture.store.submitBuild(spec, submittedBy: nil) } throws: {
            guard case StoreError.invalid(let field, _) = $0 else { return false }
            return field == "context.digest"
        }
        spec.tags = ["bad tag"]
        await #expect { try await fixture.store.submitBuild(spec, submittedBy: nil) } throws: {
            guard case StoreError.invalid(let field, _) = $0 else { return false }
            return field == "tags[0]"
        }
        spec.tags = ["1.0"]
        spec.image = "registry.local/app:latest"
        await #expect { try await fixture.store.submitBuild(spec, submittedBy: nil) } throws: {
            guard case StoreError.invalid(let field, _) = $0 else { return false }
            return field == "image"
        }
        spec.image = "registry.local/app"
        spec.platforms.append(PlatformSpec(platform: Platform(os: "linux", architecture: "x86_64")))
        await #expect { try await fixture.store.submitBuild(spec, submittedBy: nil) } throws: { "\($0)".contains("listed twice") }
    }
}

@Suite struct SchedulingTests {
    /// A poll writes the agent's row only when it says something new: what the agent offers changed, or its last-seen
    /// time is a second old (the API shows it to the second). An agent polling again right after a report costs its
    /// lease no update.
    @Test func aPollWritesTheAgentsRowOnlyWhenItSaysSomethingNew() async throws {
        let fixture = try await StoreFixture()
        let agent = try await fixture.join("poller", platforms: ["linux/amd64"], labels: ["zone": "a", "gpu": "yes"])
        func seen() async throws -> (at: Date?, labels: [String: String]) {
            let view = try await fixture.store.agent(id: agent.id)
            return (view.lastSeenAt, view.labels)
        }
        #expect(try await fixture.poll(agent) == nil)
        let arrival = try #require(try await seen().at)
        fixture.clock.advance(0.5)
        #expect(try await fixture.poll(agent) == nil)
        #expect(try await seen().at == arrival)
        // Labels narrowed by the poll are written at once, with the time.
        #expect(try await fixture.poll(agent, labels: ["zone": "a"]) == nil)
        #expect(abs(try #require(try await seen().at).timeIntervalSince(arrival) - 0.5) < 0.001)
        #expect(try await seen().labels == ["zone": "a"])
        fixture.clock.advance(1.5)
        #expect(try await fixture.poll(agent, labels: ["zone": "a"]) == nil)
        #expect(abs(try #require(try await seen().at).timeIntervalSince(arrival) - 2) < 0.001)
    }

    @Test func jobsGoToMatchingAgentsInSubmissionOrder() async throws {
        let fixture = try await StoreFixture()
        let first = try await fixture.submit(platforms: ["linux/amd64", "windows/amd64:10.0.20348"])
        let second = try await fixture.submit(platforms: ["linux/amd64"])
        let linux = try await fixture.join("linux", platforms: ["linux/amd64"])
        let ltsc2019 = try await fixture.join("ltsc2019", platforms: ["windows/amd64:10.0.17763.5830"])
        let ltsc2022 = try await fixture.join("ltsc2022", platforms: ["windows/amd64:10.0.20348.2227"])

        let a = try #require(try await fixture.poll(linux))
        #expect(a.spec.buildId == first.id)
        // The agent pushes to a tag only its attempt owns; the stable child tag is the coordinator's.
        #expect(a.spec.tag == "1.0-linux-amd64-attempt-\(a.epoch)")
        #expect(a.attempt == 1)
        let b = try #require(try await fixture.poll(linux))
        #expect(b.spec.buildId == second.id)
        #expect(try await fixture.poll(linux) == nil)
        // A Windows job that names its OS build only goes to a host of that build.
        #expect(try await fixture.poll(ltsc2019) == nil)
        let windows = try #require(try await fixture.poll(ltsc2022))
        #expect(windows.spec.tag == "1.0-windows-amd64-10.0.20348-attempt-\(windows.epoch)")
        #expect(try await fixture.store.build(id: first.id).state == .running)
        #expect(
            try await fixture.store.events(buildId: first.id).map(\.type) == ["build.submitted", "job.assigned", "job.assigned"])
    }

    /// A grant writes its attempt with its push tag, job, build and event together (on PostgreSQL with the epoch taken
    /// from the sequence first): the push tag is ``Store/attemptTag(childTag:epoch:)``, cut to 128 characters.
    @Test func aGrantsPushTagIsCutToATagsLengthBeforeItsAttemptSuffix() async throws {
        let fixture = try await StoreFixture()
        let long = String(repeating: "v", count: 120)
        let build = try await fixture.submit(platforms: ["linux/amd64"], tags: [long])
        let agent = try await fixture.join("linux", platforms: ["linux/amd64"])
        let lease = try #require(try await fixture.poll(agent, confirm: false))
        #expect(lease.spec.tag.count == 128)
        #expect(lease.spec.tag == Store.attemptTag(childTag: long + "-linux-amd64", epoch: lease.epoch))
        #expect(lease.spec.tag.hasSuffix("v-attempt-\(lease.epoch)"))
        let stored = try await fixture.store.backend.read { db in
            try String.fetchOne(db, sql: "SELECT pushTag FROM attempt WHERE epoch = ?", arguments: [lease.epoch])
        }
        #expect(stored == lease.spec.tag)
        // The same grant again (the poll's answer was lost) names the same tag.
        #expect(try await fixture.poll(agent)?.spec.tag == lease.spec.tag)
        let view = try await fixture.store.build(id: build.id)
        #expect(view.state == .running)
        #expect(view.jobs.map(\.state) == [.assigned])
        #expect(view.jobs.first?.attempts == 1)
        let assigned = try #require(try await fixture.store.events(buildId: build.id).last)
        #expect(assigned.type == "job.assigned")
        #expect(assigned.data == ["agent": "linux", "attempt": "1", "epoch": "\(lease.epoch)"])
        #expect(assigned.platform == "linux/amd64")
    }

    /// A succeeded report confirms a grant the agent never confirmed (the full lease from then on) in the write that
    /// records it (on PostgreSQL one statement); a report outside the build's repository confirms it too, and fails.
    @Test func aReportConfirmsItsGrantWhereItIsRecorded() async throws {
        let fixture = try await StoreFixture()
        let build = try await fixture.submit(platforms: ["linux/amd64", "linux/arm64"])
        let agent = try await fixture.join("linux", platforms: ["linux/amd64", "linux/arm64"])
        @Sendable func attempt(_ epoch: Int64) async throws -> SQLRow? {
            try await fixture.store.backend.read { db in
                try SQLRow.fetchOne(db, sql: "SELECT * FROM attempt WHERE epoch = ?", arguments: [epoch])
            }
        }
        let lease = try #require(try await fixture.poll(agent, confirm: false))
        #expect(try await attempt(lease.epoch)?["acknowledgedAt"] as Double? == nil)
        fixture.clock.advance(1)
        let reportedAt = Store.timestamp(fixture.clock.now)
        let digest = Digest.compute(of: Data("image".utf8))
        let reference = "\(lease.spec.image):\(lease.spec.tag)"
        #expect(
            try await fixture.store.complete(
                agentId: agent.id,
                CompleteRequest(
                    jobId: lease.jobId, epoch: lease.epoch, outcome: .succeeded, imageReference: reference, digest: digest))
                == .accepted)
        let reported = try #require(try await attempt(lease.epoch))
        #expect(reported["state"] as String == "verifying")
        #expect(reported["digest"] as String? == digest.description)
        #expect(reported["imageReference"] as String? == reference)
        #expect(reported["endedAt"] as Double? == reportedAt)
        #expect(reported["acknowledgedAt"] as Double? == reportedAt)
        #expect(reported["leaseExpiresAt"] as Double >= reportedAt + fixture.store.settings.leaseTTL)
        let view = try await fixture.store.build(id: build.id)
        let job = try #require(view.jobs.first { $0.id == lease.jobId })
        #expect(job.state == .verifying)
        #expect(job.digest == digest)
        let event = try #require(try await fixture.store.events(buildId: build.id).last)
        #expect(event.type == "job.verifying")
        #expect(event.data == ["digest": digest.description, "image": reference])
        #expect(view.updatedAt == event.time)

        // Outside the build's repository: confirmed, and the attempt fails.
        let other = try #require(try await fixture.poll(agent, confirm: false))
        #expect(
            try await fixture.store.complete(
                agentId: agent.id,
                CompleteRequest(
                    jobId: other.jobId, epoch: other.epoch, outcome: .succeeded,
                    imageReference: "registry.local:5000/elsewhere/app:1", digest: digest)) != .accepted)
        let refused = try #require(try await attempt(other.epoch))
        #expect(refused["state"] as String == "failed")
        #expect(refused["acknowledgedAt"] as Double? == reportedAt)
    }

    /// A verified report marks its attempt and job succeeded, names the job's image where the check left it (the
    /// canonical reference), and says so in one event; with every platform verified the build goes on to publishing.
    @Test func aVerifiedReportSucceedsItsJobUnderTheCanonicalReference() async throws {
        let fixture = try await StoreFixture()
        let build = try await fixture.submit(platforms: ["linux/amd64", "linux/arm64"])
        let agent = try await fixture.join("linux", platforms: ["linux/amd64", "linux/arm64"])
        let first = try #require(try await fixture.poll(agent))
        let second = try #require(try await fixture.poll(agent))
        let digest = try await fixture.succeed(first, agent: agent)
        _ = try await fixture.succeed(second, agent: agent)
        let canonical = "registry.local:5000/team/app:1.0-linux-amd64"
        #expect(
            try await fixture.store.recordVerification(
                jobId: first.jobId, epoch: first.epoch, outcome: .verified, canonicalReference: canonical))
        var view = try await fixture.store.build(id: build.id)
        let job = try #require(view.jobs.first { $0.id == first.jobId })
        #expect(job.state == .succeeded)
        #expect(job.imageReference == canonical)
        #expect(job.digest == digest)
        #expect(view.state == .running)
        let state = try await fixture.store.backend.read { db in
            try String.fetchOne(db, sql: "SELECT state FROM attempt WHERE epoch = ?", arguments: [first.epoch])
        }
        #expect(state == "succeeded")
        let event = try #require(try await fixture.store.events(buildId: build.id).last)
        #expect(event.type == "job.succeeded")
        #expect(event.jobId == first.jobId)
        #expect(event.data == ["digest": digest.description, "image": "\(first.spec.image):\(first.spec.tag)"])
        #expect(view.updatedAt == event.time)
        // Recorded once: the same outcome again changes nothing.
        #expect(try await !fixture.store.recordVerification(jobId: first.jobId, epoch: first.epoch, outcome: .verified))

        #expect(try await fixture.store.recordVerification(jobId: second.jobId, epoch: second.epoch, outcome: .verified))
        view = try await fixture.store.build(id: build.id)
        #expect(view.jobs.map(\.state) == [.succeeded, .succeeded])
        #expect(view.jobs.first { $0.id == second.jobId }?.imageReference == "\(second.spec.image):\(second.spec.tag)")
        #expect(view.state == .publishing)
        #expect(try await fixture.store.duePublications().ready.count == 1)
    }

    /// The queue is narrowed by `job.platformKey` before any spec is read; the narrowing may only drop jobs the agent
    /// could not take. Every pair of a job's platform and a host's from a grid of keys, variants and OS versions: a
    /// host that satisfies a job always has that job's key among its own.
    @Test func theQueuesPlatformFilterNeverDropsAJobTheAgentCouldTake() throws {
        let texts = [
            "linux/amd64", "linux/arm64", "linux/arm64/v8", "linux/arm/v7", "windows/amd64", "windows/amd64:10.0.20348",
            "windows/amd64:10.0.20348.2227", "windows/amd64:10.0.17763.5830", "windows/arm64:10.0.26100.1",
        ]
        // OS versions that are not Windows builds, which the matching compares whole (no parser accepts them; the
        // rule must still hold).
        let platforms =
            try texts.map { try Platform(parsing: $0) } + [
                Platform(os: "linux", architecture: "amd64", osVersion: "6.1"),
                Platform(os: "linux", architecture: "amd64", osVersion: "5.15"),
                Platform(os: "windows", architecture: "amd64", osVersion: "10.0"),
            ]
        var satisfied = 0
        for job in platforms {
            for host in platforms where job.isSatisfied(by: host) {
                satisfied += 1
                #expect(
                    Store.platformKeys(satisfiableBy: [host]).contains(Store.platformKey(job)),
                    "a \(host) host satisfies a \(job) job, but the filter would drop it")
            }
        }
        #expect(satisfied > platforms.count, "the grid has pairs beyond each platform with itself")
        #expect(Store.platformKeys(satisfiableBy: []).isEmpty)
    }

    /// An agent behind a deep queue of other platforms' jobs still gets its own, first come first served; a job that
    /// asks for a Windows build goes only to a host of that build.
    @Test func aDeepQueueOfOtherPlatformsJobsDoesNotHideAnAgentsOwn() async throws {
        let fixture = try await StoreFixture()
        for _ in 0..<40 {
            _ = try await fixture.submit(platforms: ["windows/amd64:10.0.17763", "linux/s390x"])
        }
        let kernel = try await fixture.submit(platforms: ["windows/amd64:10.0.20348"])
        let plain = try await fixture.submit(platforms: ["windows/amd64"])
        let linux = try await fixture.join("unversioned", platforms: ["windows/amd64"])
        let pinned = try await fixture.join("pinned", platforms: ["windows/amd64:10.0.20348.2227"])
        let poll = PollRequest(platforms: linux.platforms, labels: [:], builders: ["buildah"], version: "test")
        let arrival = try await fixture.store.checkPoll(agentId: linux.id, poll: poll, offer: nil)
        #expect(
            try await fixture.store.checkPoll(agentId: linux.id, poll: poll, offer: (arrival.platforms, arrival.labels))
                .worthLeasing)
        let first = try #require(try await fixture.poll(linux))
        #expect(first.spec.buildId == plain.id, "a host without an OS build cannot take \(kernel.id)'s job")
        #expect(try await fixture.poll(linux) == nil)
        let second = try #require(try await fixture.poll(pinned))
        #expect(second.spec.buildId == kernel.id)
        #expect(try await fixture.poll(pinned) == nil)
    }

    @Test func labelsAndAgentStateGateLeases() async throws {
        let fixture = try await StoreFixture()
        _ = try await fixture.submit(platforms: ["linux/arm64"], agentLabels: ["gpu": "yes"])
        let plain = try await fixture.join("plain", platforms: ["linux/arm64"])
        let gpu = try await fixture.join("gpu", platforms: ["linux/arm64/v8"], labels: ["gpu": "yes"])
        #expect(try await fixture.poll(plain) == nil)
        try await fixture.store.setAgentState("gpu", to: .draining)
        #expect(try await fixture.poll(gpu) == nil)
        try await fixture.store.setAgentState("gpu", to: .active)
        #expect(try await fixture.poll(gpu) != nil)
    }

    /// A poll reads before it writes. On arrival the lease (a write) is worth it only when the agent's row must record
    /// the poll (the offer changed, or it was last seen a second ago) or something may be handed out: an agent polling
    /// again right after its report, with nothing queued for it, costs no write. A held poll woken later never writes
    /// for being seen again. The read also says when a job held back by its retry backoff may start.
    @Test func aPollWritesOnlyWhenItsRowIsOutOfDateOrSomethingMayBeLeased() async throws {
        let fixture = try await StoreFixture()
        let agent = try await fixture.join("a", platforms: ["linux/amd64"])
        let poll = PollRequest(platforms: agent.platforms, labels: [:], builders: ["buildah"], version: "test")
        _ = try await fixture.submit(platforms: ["linux/amd64"])
        let lease = try #require(try await fixture.poll(agent))
        try await fixture.store.complete(
            agentId: agent.id, CompleteRequest(jobId: lease.jobId, epoch: lease.epoch, outcome: .failed))
        let reported = fixture.store.writesCommitted
        fixture.clock.advance(0.5)
        let again = try await fixture.store.checkPoll(agentId: agent.id, poll: poll, offer: nil)
        #expect(again.worthLeasing == false)
        #expect(again.platforms == agent.platforms)
        // The job waits out its retry backoff (5 s after the report).
        let retryAt = try #require(again.nextQueuedJobTime)
        #expect(abs(retryAt.timeIntervalSince(fixture.clock.now) - 4.5) < 0.001)
        #expect(fixture.store.writesCommitted == reported)
        // What the poll offers changed: worth writing at once.
        let narrower = PollRequest(platforms: agent.platforms, labels: [:], builders: ["docker"], version: "test")
        #expect(try await fixture.store.checkPoll(agentId: agent.id, poll: narrower, offer: nil).worthLeasing)
        // A second after the row was written, an arrival records the poll; a held poll's wake-up does not.
        fixture.clock.advance(1)
        #expect(try await fixture.store.checkPoll(agentId: agent.id, poll: poll, offer: nil).worthLeasing)
        let offer = (again.platforms, again.labels)
        #expect(try await fixture.store.checkPoll(agentId: agent.id, poll: poll, offer: offer).worthLeasing == false)
        // Once the backoff is over, the job is there to lease.
        fixture.clock.advance(4)
        #expect(try await fixture.store.checkPoll(agentId: agent.id, poll: poll, offer: offer).worthLeasing)
        #expect(try await fixture.poll(agent)?.attempt == 2)
        // An unknown agent is refused by the read as by the lease.
        await #expect(throws: StoreError.self) {
            try await fixture.store.checkPoll(agentId: "agt_unknown", poll: poll, offer: nil)
        }
    }

    /// The read a held poll makes when it is woken: true exactly when the lease write could hand it something, and
    /// never a write itself.
    @Test func aWokenPollReadsWhetherAnythingIsThereForItWithoutWriting() async throws {
        let fixture = try await StoreFixture()
        let arm = try await fixture.join("arm", platforms: ["linux/arm64"])
        let gpu = try await fixture.join("gpu", platforms: ["linux/amd64"], labels: ["gpu": "yes"])
        func mayLease(_ agent: AgentView) async throws -> Bool {
            let poll = PollRequest(platforms: agent.platforms, labels: agent.labels, builders: ["buildah"], version: "test")
            let arrival = try await fixture.store.checkPoll(agentId: agent.id, poll: poll, offer: nil)
            return try await fixture.store.checkPoll(agentId: agent.id, poll: poll, offer: (arrival.platforms, arrival.labels))
                .worthLeasing
        }
        #expect(try await mayLease(arm) == false)
        _ = try await fixture.submit(platforms: ["linux/amd64"], agentLabels: ["gpu": "no"])
        _ = try await fixture.submit(platforms: ["windows/amd64"])
        #expect(try await mayLease(arm) == false)
        #expect(try await mayLease(gpu) == false)
        let submitted = fixture.store.writesCommitted
        for _ in 0..<20 { _ = try await mayLease(arm) }
        #expect(fixture.store.writesCommitted == submitted)

        _ = try await fixture.submit(platforms: ["linux/arm64/v8"])
        #expect(try await mayLease(arm))
        // A grant the agent has not confirmed is handed out again by the next poll: worth the write.
        #expect(try await fixture.poll(arm, confirm: false) != nil)
        #expect(try await mayLease(arm))
        // Nothing for an agent that is not active, whatever is queued.
        _ = try await fixture.submit(platforms: ["linux/amd64"], agentLabels: ["gpu": "yes"])
        #expect(try await mayLease(gpu))
        try await fixture.store.setAgentState("gpu", to: .draining)
        #expect(try await mayLease(gpu) == false)
    }

    @Test func heartbeatsExtendTheLeaseAndStaleCallsAreRefused() async throws {
        let fixture = try await StoreFixture()
        _ = try await fixture.submit(platforms: ["linux/amd64"])
        let agent = try await fixture.join("a", platforms: ["linux/amd64"])
        let other = try await fixture.join("b", platforms: ["linux/amd64"])
        let lease = try #require(try await fixture.poll(agent))
        fixture.clock.advance(50)
        let beat = try await fixture.store.heartbeat(
            agentId: agent.id, HeartbeatRequest(jobId: lease.jobId, epoch: lease.epoch, phase: "building"))
        #expect(beat.cancelled == false)
        #expect(beat.leaseExpiresAt == fixture.clock.now.addingTimeInterval(60))
        fixture.clock.advance(50)
        #expect(try await fixture.store.expireLeases() == 0)
        await #expect {
            try await fixture.store.heartbeat(agentId: other.id, HeartbeatRequest(jobId: lease.jobId, epoch: lease.epoch))
        } throws: {
            guard case StoreError.forbidden(let reason) = $0 else { return false }
            return reason.contains("another agent")
        }
        await #expect {
            try await fixture.store.heartbeat(agentId: agent.id, HeartbeatRequest(jobId: lease.jobId, epoch: lease.epoch + 99))
        } throws: {
            $0 is StoreError
        }
    }

    /// A heartbeat (on PostgreSQL one statement) confirms a grant, extends a running lease, marks its agent seen, and
    /// records a phase once, when it changes; a heartbeat of an attempt under verification leaves its lease alone.
    @Test func aHeartbeatConfirmsExtendsSeesAndRecordsANewPhaseOnce() async throws {
        let fixture = try await StoreFixture()
        let build = try await fixture.submit(platforms: ["linux/amd64"])
        let agent = try await fixture.join("a", platforms: ["linux/amd64"])
        let lease = try #require(try await fixture.poll(agent, confirm: false))
        @Sendable func row(_ sql: String, _ argument: SQLBindable) async throws -> SQLRow? {
            try await fixture.store.backend.read { db in try SQLRow.fetchOne(db, sql: sql, arguments: [argument]) }
        }
        let attemptSQL = "SELECT * FROM attempt WHERE epoch = ?"
        #expect(try await row(attemptSQL, lease.epoch)?["acknowledgedAt"] as Double? == nil)
        let events = try await fixture.store.events(buildId: build.id).count

        fixture.clock.advance(5)
        let beatAt = Store.timestamp(fixture.clock.now)
        _ = try await fixture.store.heartbeat(
            agentId: agent.id, HeartbeatRequest(jobId: lease.jobId, epoch: lease.epoch, phase: "building"))
        var attempt = try #require(try await row(attemptSQL, lease.epoch))
        #expect(attempt["acknowledgedAt"] as Double? == beatAt)
        #expect(attempt["leaseExpiresAt"] as Double == beatAt + fixture.store.settings.leaseTTL)
        #expect(attempt["phase"] as String? == "building")
        #expect(try await row("SELECT lastSeenAt FROM agent WHERE id = ?", agent.id)?["lastSeenAt"] as Double? == beatAt)
        #expect(try await fixture.store.events(buildId: build.id).map(\.type).suffix(1) == ["job.phase"])

        // The same phase again: extended and seen, no event; the confirmation keeps its first time.
        fixture.clock.advance(5)
        let laterAt = Store.timestamp(fixture.clock.now)
        _ = try await fixture.store.heartbeat(
            agentId: agent.id, HeartbeatRequest(jobId: lease.jobId, epoch: lease.epoch, phase: "building"))
        attempt = try #require(try await row(attemptSQL, lease.epoch))
        #expect(attempt["acknowledgedAt"] as Double? == beatAt)
        #expect(attempt["leaseExpiresAt"] as Double == laterAt + fixture.store.settings.leaseTTL)
        #expect(try await row("SELECT lastSeenAt FROM agent WHERE id = ?", agent.id)?["lastSeenAt"] as Double? == laterAt)
        #expect(try await fixture.store.events(buildId: build.id).count == events + 1)

        // Under verification the lease stays where the report left it.
        _ = try await fixture.succeed(lease, agent: agent)
        let reported = try #require(try await row(attemptSQL, lease.epoch))["leaseExpiresAt"] as Double
        fixture.clock.advance(5)
        _ = try await fixture.store.heartbeat(
            agentId: agent.id, HeartbeatRequest(jobId: lease.jobId, epoch: lease.epoch, phase: "reporting"))
        attempt = try #require(try await row(attemptSQL, lease.epoch))
        #expect(attempt["leaseExpiresAt"] as Double == reported)
        #expect(attempt["phase"] as String? == "reporting")
        #expect(try await fixture.store.events(buildId: build.id).last?.data == ["phase": "reporting"])
    }

    /// Each event of a job marks its build updated at the event's time, and no other build (on PostgreSQL the
    /// event and the update are one statement).
    @Test func eachEventOfAJobMarksItsBuildUpdatedAndNoOther() async throws {
        let fixture = try await StoreFixture()
        let build = try await fixture.submit(platforms: ["linux/amd64"])
        let bystander = try await fixture.submit(platforms: ["linux/arm64"])
        let agent = try await fixture.join("a", platforms: ["linux/amd64"])
        let lease = try #require(try await fixture.poll(agent))
        let untouched = try await fixture.store.build(id: bystander.id).updatedAt
        func expectUpdatedNow(after type: String) async throws {
            let view = try await fixture.store.build(id: build.id)
            #expect(abs(view.updatedAt.timeIntervalSince(fixture.clock.now)) < 0.001, "after \(type)")
            let event = try #require(try await fixture.store.events(buildId: build.id).last)
            #expect(event.type == type)
            #expect(abs(event.time.timeIntervalSince(view.updatedAt)) < 0.001)
            #expect(try await fixture.store.build(id: bystander.id).updatedAt == untouched)
        }
        fixture.clock.advance(10)
        _ = try await fixture.store.heartbeat(
            agentId: agent.id, HeartbeatRequest(jobId: lease.jobId, epoch: lease.epoch, phase: "building"))
        try await expectUpdatedNow(after: "job.phase")
        fixture.clock.advance(10)
        _ = try await fixture.store.appendLog(
            agentId: agent.id, jobId: lease.jobId, epoch: lease.epoch, offset: 0, data: Data("step 1/3\n".utf8))
        try await expectUpdatedNow(after: "job.log")
        fixture.clock.advance(10)
        try await fixture.store.complete(
            agentId: agent.id, CompleteRequest(jobId: lease.jobId, epoch: lease.epoch, outcome: .failed, exitCode: 2))
        try await expectUpdatedNow(after: "job.retrying")
        #expect(try await fixture.store.build(id: build.id).state == .running)
    }

    @Test func anExpiredLeaseIsLostRequeuedAtOnceAndFencedOff() async throws {
        let fixture = try await StoreFixture()
        let build = try await fixture.submit(platforms: ["linux/amd64"], maxAttempts: 2)
        let agent = try await fixture.join("a", platforms: ["linux/amd64"])
        let other = try await fixture.join("b", platforms: ["linux/amd64"])
        let first = try #require(try await fixture.poll(agent))
        fixture.clock.advance(61)
        #expect(try await fixture.store.expireLeases() == 1)
        var view = try await fixture.store.build(id: build.id)
        #expect(view.jobs[0].state == .queued)
        #expect(view.jobs[0].reason?.contains("lease expired") == true)
        // The lost attempt can no longer act.
        await #expect {
            try await fixture.store.complete(
                agentId: agent.id, CompleteRequest(jobId: first.jobId, epoch: first.epoch, outcome: .failed))
        } throws: { $0 is StoreError }
        // No backoff: the build did not fail, its host went away; another agent takes it at once.
        let second = try #require(try await fixture.poll(other))
        #expect(second.attempt == 2)
        #expect(second.epoch > first.epoch)
        fixture.clock.advance(61)
        try await fixture.store.expireLeases()
        view = try await fixture.store.build(id: build.id)
        #expect(view.jobs[0].state == .failed)
        #expect(view.state == .failed)
        #expect(view.reason?.contains("no list was published") == true)
        #expect(
            try await fixture.store.events(buildId: build.id).map(\.type).suffix(3) == ["job.lost", "job.failed", "build.failed"])
    }

    @Test func aGrantTheAgentNeverConfirmedIsGivenBackAfterATTLUncounted() async throws {
        let fixture = try await StoreFixture()
        let build = try await fixture.submit(platforms: ["linux/amd64"], maxAttempts: 1)
        let agent = try await fixture.join("a", platforms: ["linux/amd64"])
        let other = try await fixture.join("b", platforms: ["linux/amd64"])
        let lost = try #require(try await fixture.poll(agent, confirm: false))
        // Polls are idempotent: polling again before confirming returns the same lease, same epoch.
        let again = try #require(try await fixture.poll(agent, confirm: false))
        #expect(again.epoch == lost.epoch && again.jobId == lost.jobId && again.spec == lost.spec)
        // Not confirmed within the acknowledge window (one TTL): given back, not counted.
        fixture.clock.advance(59)
        #expect(try await fixture.store.expireLeases() == 0)
        fixture.clock.advance(2)
        #expect(try await fixture.store.expireLeases() == 1)
        let next = try #require(try await fixture.poll(other))
        #expect(next.epoch > lost.epoch)
        try await fixture.store.complete(
            agentId: other.id, CompleteRequest(jobId: next.jobId, epoch: next.epoch, outcome: .failed, reason: "boom"))
        // max_attempts 1 and the build failed on its own only attempt: the unconfirmed grant did not use it up.
        let view = try await fixture.store.build(id: build.id)
        #expect(view.state == .failed)
        #expect(view.jobs[0].reason?.contains("boom") == true, "\(view)")
        let lostEvent = try #require(try await fixture.store.events(buildId: build.id).first { $0.type == "job.lost" })
        #expect(lostEvent.data["counted"] == "false")
        #expect(lostEvent.data["reason"]?.contains("never confirmed") == true)
    }

    @Test func anUndeliveredGrantIsReleasedAtOnceButNotAfterTheAgentConfirmedIt() async throws {
        let fixture = try await StoreFixture()
        _ = try await fixture.submit(platforms: ["linux/amd64"], maxAttempts: 1)
        let agent = try await fixture.join("a", platforms: ["linux/amd64"])
        let other = try await fixture.join("b", platforms: ["linux/amd64"])
        // The agent polled again (its first connection closed) and was handed the same lease: the first poll's
        // release must not take it away.
        let closed = try #require(try await fixture.poll(agent, confirm: false))
        fixture.clock.advance(1)
        let undelivered = try #require(try await fixture.poll(agent, confirm: false))
        #expect(undelivered.epoch == closed.epoch)
        try await fixture.store.releaseUndelivered(agentId: agent.id, epoch: closed.epoch, offeredUntil: closed.leaseExpiresAt)
        #expect(try await fixture.poll(other) == nil, "a lease re-offered to a newer poll was released")
        // The newer poll's answer was lost as well: released now.
        try await fixture.store.releaseUndelivered(
            agentId: agent.id, epoch: undelivered.epoch, offeredUntil: undelivered.leaseExpiresAt)
        // max_attempts 1: had the undelivered grant counted, the job would have failed instead of being queued.
        let taken = try #require(try await fixture.poll(other))
        #expect(taken.epoch > undelivered.epoch)
        // Once confirmed, a release request changes nothing.
        try await fixture.store.releaseUndelivered(agentId: other.id, epoch: taken.epoch, offeredUntil: taken.leaseExpiresAt)
        _ = try await fixture.store.heartbeat(agentId: other.id, HeartbeatRequest(jobId: taken.jobId, epoch: taken.epoch))
    }

    @Test func anAgentShuttingDownGivesItsJobBackUncounted() async throws {
        let fixture = try await StoreFixture()
        let build = try await fixture.submit(platforms: ["linux/amd64"], maxAttempts: 1)
        let agent = try await fixture.join("a", platforms: ["linux/amd64"])
        // Three rolling restarts of the only agent, each giving the job back mid-build.
        for _ in 0..<3 {
            let lease = try #require(try await fixture.poll(agent))
            try await fixture.store.complete(
                agentId: agent.id,
                CompleteRequest(jobId: lease.jobId, epoch: lease.epoch, outcome: .released, reason: "shutting down"))
            // A repeated report is accepted without change.
            try await fixture.store.complete(
                agentId: agent.id, CompleteRequest(jobId: lease.jobId, epoch: lease.epoch, outcome: .released))
        }
        let lease = try #require(try await fixture.poll(agent))
        #expect(lease.attempt == 4)
        let view = try await fixture.store.build(id: build.id)
        #expect(view.state == .running && view.jobs[0].state == .assigned, "\(view)")
        #expect(try await fixture.store.events(buildId: build.id).filter { $0.type == "job.released" }.count == 3)
    }

    @Test func leasesAreExtendedNotExpiredAfterTheCoordinatorCouldNotWrite() async throws {
        let fixture = try await StoreFixture()
        _ = try await fixture.submit(platforms: ["linux/amd64"])
        let agent = try await fixture.join("a", platforms: ["linux/amd64"])
        _ = try #require(try await fixture.poll(agent))
        // Writes fail (a full disk refuses the agent's heartbeats) until past the lease's end, then work again.
        fixture.clock.advance(65)
        fixture.store.writeHealth.failed(at: fixture.clock.now, reason: "database or disk is full")
        fixture.clock.advance(5)
        #expect(try await fixture.store.expireLeases() == 0)
        #expect(try await fixture.store.listAgents().first?.currentJob != nil)
        // A full TTL after the last failure without a heartbeat, the lease does expire.
        fixture.clock.advance(61)
        #expect(try await fixture.store.expireLeases() == 1)
    }

    @Test func logAppendsAreIdempotentAndGapsAreReported() async throws {
        let fixture = try await StoreFixture()
        let build = try await fixture.submit(platforms: ["linux/amd64"])
        let agent = try await fixture.join("a", platforms: ["linux/amd64"])
        let lease = try #require(try await fixture.poll(agent))
        func append(_ offset: Int64, _ text: String) async throws -> LogAppendResult {
            try await fixture.store.appendLog(
                agentId: agent.id, jobId: lease.jobId, epoch: lease.epoch, offset: offset, data: Data(text.utf8))
        }
        #expect(try await append(0, "step 1\n") == .stored(size: 7))
        #expect(try await append(0, "step 1\n") == .stored(size: 7))  // repeated
        #expect(try await append(4, " 1\nstep 2\n") == .stored(size: 14))  // overlapping
        #expect(try await append(20, "lost?") == .gap(size: 14))
        let log = try await fixture.store.readLog(buildId: build.id, platform: "linux/amd64")
        #expect(String(decoding: log.data, as: UTF8.self) == "step 1\nstep 2\n")
        let tail = try await fixture.store.readLog(buildId: build.id, platform: "linux/amd64", offset: 7)
        #expect(String(decoding: tail.data, as: UTF8.self) == "step 2\n")
        #expect(try await fixture.store.build(id: build.id).jobs[0].lastLogLine == "step 2")
    }

    /// An agent reports before it sends the rest of its log: a log is complete (`finished`, what ends followers) only
    /// once the attempt is over and its agent closed the log at the stored size — or it was cut at the limit, its
    /// lease was lost, or ``Store/logTailGrace`` passed after the attempt ended.
    @Test func aLogIsCompleteWhenItsAgentClosesItNotWhenTheAttemptReports() async throws {
        let fixture = try await StoreFixture()
        let build = try await fixture.submit(platforms: ["linux/amd64"], maxAttempts: 2)
        let agent = try await fixture.join("a", platforms: ["linux/amd64"])
        let lease = try #require(try await fixture.poll(agent))
        func finished() async throws -> Bool {
            try await fixture.store.readLog(buildId: build.id, platform: "linux/amd64", offset: .max, limit: 0).finished
        }
        let head = Data("step one\n".utf8)
        _ = try await fixture.store.appendLog(agentId: agent.id, jobId: lease.jobId, epoch: lease.epoch, offset: 0, data: head)
        #expect(try await finished() == false)
        try await fixture.store.complete(
            agentId: agent.id, CompleteRequest(jobId: lease.jobId, epoch: lease.epoch, outcome: .failed, reason: "boom"))
        // Reported; the rest of the log is still on its way.
        #expect(try await finished() == false)
        let tail = Data("step two\n".utf8)
        _ = try await fixture.store.appendLog(
            agentId: agent.id, jobId: lease.jobId, epoch: lease.epoch, offset: Int64(head.count), data: tail)
        let size = Int64(head.count + tail.count)
        // A close at another size than the stored one is a gap and closes nothing.
        #expect(
            try await fixture.store.closeLog(agentId: agent.id, jobId: lease.jobId, epoch: lease.epoch, size: size + 5)
                == .gap(size: size))
        #expect(try await finished() == false)
        // Another agent cannot close it.
        let other = try await fixture.join("b", platforms: ["linux/amd64"])
        await #expect(throws: StoreError.self) {
            try await fixture.store.closeLog(agentId: other.id, jobId: lease.jobId, epoch: lease.epoch, size: size)
        }
        #expect(
            try await fixture.store.closeLog(agentId: agent.id, jobId: lease.jobId, epoch: lease.epoch, size: size)
                == .stored(size: size))
        #expect(try await finished())
        let log = try await fixture.store.readLog(buildId: build.id, platform: "linux/amd64", attempt: 1)
        #expect(log.data == head + tail && log.finished)

        // The retry's agent reports and dies before closing: the log counts as complete a grace period later.
        fixture.clock.advance(30)
        let retry = try #require(try await fixture.poll(agent))
        #expect(retry.attempt == 2)
        try await fixture.store.complete(
            agentId: agent.id, CompleteRequest(jobId: retry.jobId, epoch: retry.epoch, outcome: .failed, reason: "boom"))
        #expect(try await finished() == false)
        fixture.clock.advance(Store.logTailGrace - 1)
        #expect(try await finished() == false)
        fixture.clock.advance(1)
        #expect(try await finished())
    }

    @Test func aLostLeasesLogIsCompleteAtOnce() async throws {
        let fixture = try await StoreFixture()
        let build = try await fixture.submit(platforms: ["linux/amd64"], maxAttempts: 2)
        let agent = try await fixture.join("a", platforms: ["linux/amd64"])
        let lease = try #require(try await fixture.poll(agent))
        _ = try await fixture.store.appendLog(
            agentId: agent.id, jobId: lease.jobId, epoch: lease.epoch, offset: 0, data: Data("started\n".utf8))
        fixture.clock.advance(61)
        #expect(try await fixture.store.expireLeases() == 1)
        // Its agent can no longer append, so nothing more will come.
        #expect(try await fixture.store.readLog(buildId: build.id, platform: "linux/amd64", attempt: 1).finished)
    }

    @Test func manyLogChunksWithinASecondMakeOneLogEvent() async throws {
        let fixture = try await StoreFixture()
        let build = try await fixture.submit(platforms: ["linux/amd64"])
        let agent = try await fixture.join("a", platforms: ["linux/amd64"])
        let lease = try #require(try await fixture.poll(agent))
        var offset: Int64 = 0
        func append(_ line: String) async throws {
            let data = Data("\(line)\n".utf8)
            #expect(
                try await fixture.store.appendLog(
                    agentId: agent.id, jobId: lease.jobId, epoch: lease.epoch, offset: offset, data: data)
                    == .stored(size: offset + Int64(data.count)))
            offset += Int64(data.count)
        }
        func logEvents() async throws -> [BuildEvent] {
            try await fixture.store.events(buildId: build.id, limit: 1_000).filter { $0.type == "job.log" }
        }
        // A chatty build: 200 chunks within one second of the store's clock.
        for index in 1...200 {
            try await append("line \(index)")
            if index % 50 == 0 { fixture.clock.advance(0.2) }
        }
        #expect(try await logEvents().map { $0.data["line"] } == ["line 1"])
        // Every chunk still counts for the job's last line and the log itself.
        #expect(try await fixture.store.build(id: build.id).jobs[0].lastLogLine == "line 200")
        #expect(try await fixture.store.readLog(buildId: build.id, platform: "linux/amd64").size == offset)
        // A second after the last event, the next chunk makes the next one, with its own last line.
        fixture.clock.advance(0.3)
        try await append("line 201")
        #expect(try await logEvents().map { $0.data["line"] } == ["line 1", "line 201"])
        // Ten more seconds at 20 chunks a second: about one event a second, not one a chunk.
        for index in 202...401 {
            try await append("line \(index)")
            fixture.clock.advance(0.05)
        }
        let events = try await logEvents()
        #expect((11...13).contains(events.count), "\(events.count) job.log events for 201 chunks in 10 s")
    }

    @Test func logReadsByOffsetAndLimitReturnExactlyTheAskedSlice() async throws {
        let fixture = try await StoreFixture()
        let build = try await fixture.submit(platforms: ["linux/amd64"])
        let agent = try await fixture.join("a", platforms: ["linux/amd64"])
        let lease = try #require(try await fixture.poll(agent))
        var generator = SystemRandomNumberGenerator()
        var whole = Data()
        for index in 0..<60 {
            let line =
                Data("line \(index) ".utf8)
                + Data(repeating: UInt8(ascii: "a") + UInt8(index % 26), count: Int.random(in: 1...300, using: &generator))
                + Data("\n".utf8)
            _ = try await fixture.store.appendLog(
                agentId: agent.id, jobId: lease.jobId, epoch: lease.epoch, offset: Int64(whole.count), data: line)
            whole.append(line)
        }
        let size = Int64(whole.count)
        let cases: [(Int64, Int)] =
            [(0, 1), (0, 10_000_000), (5, 17), (size - 1, 10), (size, 10), (size + 5, 10), (300, 0)]
            + (0..<40).map { _ in (Int64.random(in: 0..<size, using: &generator), Int.random(in: 1...2_000, using: &generator)) }
        for (offset, limit) in cases {
            let read = try await fixture.store.readLog(buildId: build.id, platform: "linux/amd64", offset: offset, limit: limit)
            let start = Int(min(offset, size))
            let expected = whole[start..<min(whole.count, start + limit)]
            #expect(read.data == expected, "offset \(offset) limit \(limit)")
            #expect(read.size == size)
        }
    }

    /// A small read of a large log fetches about what it returns, not the log up to it: the bytes the store fetched
    /// for 100 bytes near the end or in the middle stay within one batch of chunks, the same for a 40 KiB and a
    /// 1 MiB log. (Reading everything and slicing, or reading from the start up to the offset, fetches the log.)
    @Test func aSmallLogReadFetchesTheSameFewBytesHoweverLargeTheLog() async throws {
        let fixture = try await StoreFixture()
        let chunkSize = 1_024
        var fetched: [String: [Int]] = [:]
        for (name, chunks) in [("small", 40), ("large", 1_024)] {
            let build = try await fixture.submit(platforms: ["linux/amd64"])
            let agent = try await fixture.join(name, platforms: ["linux/amd64"])
            let lease = try #require(try await fixture.poll(agent))
            for index in 0..<chunks {
                var chunk = Data(repeating: UInt8(ascii: "a") + UInt8(index % 26), count: chunkSize - 1)
                chunk.append(UInt8(ascii: "\n"))
                _ = try await fixture.store.appendLog(
                    agentId: agent.id, jobId: lease.jobId, epoch: lease.epoch, offset: Int64(index * chunkSize), data: chunk)
            }
            let size = Int64(chunks * chunkSize)
            for offset in [size - 100, size / 2 + 10] {
                let before = fixture.store.logBytesFetched
                let read = try await fixture.store.readLog(
                    buildId: build.id, platform: "linux/amd64", offset: offset, limit: 100)
                #expect(read.data.count == 100 && read.size == size)
                fetched[name, default: []].append(fixture.store.logBytesFetched - before)
            }
        }
        let small = try #require(fetched["small"]), large = try #require(fetched["large"])
        #expect(large == small, "bytes fetched for the same small reads: 40 KiB log \(small), 1 MiB log \(large)")
        #expect(large.allSatisfy { $0 <= 16 * chunkSize }, "\(large)")
    }
}

@Suite struct CompletionAndPublishingTests {
    @Test func verifiedPlatformsQueueOnePublicationAndRetryRepublishes() async throws {
        let fixture = try await StoreFixture()
        let build = try await fixture.submit(platforms: ["linux/amd64", "linux/arm64"])
        let amd = try await fixture.join("amd", platforms: ["linux/amd64"])
        let arm = try await fixture.join("arm", platforms: ["linux/arm64"])
        let amdLease = try #require(try await fixture.poll(amd))
        let armLease = try #require(try await fixture.poll(arm))
        let amdDigest = try await fixture.succeed(amdLease, agent: amd)
        // The same report twice is fine; a different digest for the same attempt is not.
        _ = try await fixture.succeed(amdLease, agent: amd, digest: amdDigest)
        await #expect {
            try await fixture.succeed(amdLease, agent: amd, digest: Digest.compute(of: Data("other".utf8)))
        } throws: {
            guard case StoreError.conflict = $0 else { return false }
            return true
        }
        try await fixture.verifyAll()
        #expect(try await fixture.store.duePublications().ready.isEmpty)
        #expect(try await fixture.store.build(id: build.id).state == .running)
        _ = try await fixture.succeed(armLease, agent: arm)
        try await fixture.verifyAll()
        let due = try await fixture.store.duePublications().ready
        #expect(due.count == 1)
        #expect(due[0].children.map(\.platform.description) == ["linux/amd64", "linux/arm64"])
        #expect(try await fixture.store.build(id: build.id).state == .publishing)

        let listDigest = Digest.compute(of: Data("list 1".utf8))
        try await fixture.publish(id: due[0].id, listDigest: listDigest, mediaType: MediaType.ociImageIndex)
        // A second completion of the same run changes nothing.
        try await fixture.store.publicationSucceeded(
            id: due[0].id, listDigest: listDigest, mediaType: MediaType.ociImageIndex, tags: due[0].tags)
        var view = try await fixture.store.build(id: build.id)
        #expect(view.state == .published)
        #expect(view.listDigest == listDigest)
        #expect(try await fixture.store.duePublications().ready.isEmpty)
        #expect(try await fixture.store.events(buildId: build.id).filter { $0.type == "list.published" }.count == 1)

        // Rebuild one platform: a new digest means a new publication.
        view = try await fixture.store.retryJob(buildId: build.id, platform: "linux/arm64")
        #expect(view.state == .running)
        let again = try #require(try await fixture.poll(arm))
        #expect(again.attempt == 2)
        _ = try await fixture.succeed(again, agent: arm)
        try await fixture.verifyAll()
        let second = try await fixture.store.duePublications().ready
        #expect(second.count == 1)
        #expect(second[0].id != due[0].id)
        #expect(second[0].children[0].digest == amdDigest)
    }

    @Test func retryingWhilePublishingSupersedesThePendingList() async throws {
        let fixture = try await StoreFixture()
        let build = try await fixture.submit(platforms: ["linux/amd64"])
        let agent = try await fixture.join("a", platforms: ["linux/amd64"])
        let lease = try #require(try await fixture.poll(agent))
        _ = try await fixture.succeed(lease, agent: agent)
        try await fixture.verifyAll()
        let pending = try await fixture.store.duePublications().ready
        #expect(pending.count == 1)
        _ = try await fixture.store.retryJob(buildId: build.id, platform: "linux/amd64")
        #expect(try await fixture.store.duePublications().ready.isEmpty)
        // A late success of the superseded publication changes nothing, and the retried job can be leased.
        // The publisher re-checks right before the tag PUTs: the superseded run pushes no tag.
        let claim = try await fixture.store.claimPublication(
            id: pending[0].id, listDigest: Digest.compute(of: Data("stale".utf8)), tags: ["1.0"])
        guard case .abandon = claim else {
            Issue.record("a superseded run was allowed to tag: \(claim)")
            return
        }
        #expect(try await fixture.store.build(id: build.id).state == .running)
        #expect(try await fixture.poll(agent) != nil)
    }

    @Test func aRejectedDigestFailsTheAttemptAndRetries() async throws {
        let fixture = try await StoreFixture()
        let build = try await fixture.submit(platforms: ["linux/amd64"])
        let agent = try await fixture.join("a", platforms: ["linux/amd64"])
        let lease = try #require(try await fixture.poll(agent))
        _ = try await fixture.succeed(lease, agent: agent)
        try await fixture.store.recordVerification(
            jobId: lease.jobId, epoch: lease.epoch, outcome: .rejected(reason: "the image is linux/arm64, not linux/amd64"))
        let view = try await fixture.store.build(id: build.id)
        #expect(view.jobs[0].state == .queued)
        #expect(view.jobs[0].reason == "the image is linux/arm64, not linux/amd64")
    }

    @Test func cancellingStopsQueuedJobsAndTellsRunningOnes() async throws {
        let fixture = try await StoreFixture()
        let build = try await fixture.submit(platforms: ["linux/amd64", "linux/arm64"])
        let agent = try await fixture.join("a", platforms: ["linux/amd64"])
        let lease = try #require(try await fixture.poll(agent))
        var view = try await fixture.store.cancelBuild(id: build.id, by: "alice")
        #expect(view.state == .cancelled)
        #expect(view.jobs.map(\.state) == [.assigned, .cancelled])
        let beat = try await fixture.store.heartbeat(agentId: agent.id, HeartbeatRequest(jobId: lease.jobId, epoch: lease.epoch))
        #expect(beat.cancelled)
        try await fixture.store.complete(
            agentId: agent.id, CompleteRequest(jobId: lease.jobId, epoch: lease.epoch, outcome: .cancelled))
        view = try await fixture.store.build(id: build.id)
        #expect(view.jobs.map(\.state) == [.cancelled, .cancelled])
        #expect(try await fixture.store.duePublications().ready.isEmpty)
        await #expect { try await fixture.store.cancelBuild(id: build.id, by: nil) } throws: {
            "\($0)".contains("already cancelled")
        }
    }

    /// A progress stream ends after the page read with the final state: that page holds the final transition's events.
    @Test func anEventPageReadWithTheFinalStateIsTheLast() async throws {
        let fixture = try await StoreFixture()
        let build = try await fixture.submit(platforms: ["linux/amd64", "linux/arm64"])
        let running = try await fixture.store.eventPage(buildId: build.id)
        #expect(running.events.map(\.type) == ["build.submitted"])
        #expect(!running.isLast)
        let seen = try #require(running.events.last?.id)
        #expect(try await !fixture.store.eventPage(buildId: build.id, after: seen).isLast)

        _ = try await fixture.store.cancelBuild(id: build.id, by: "alice")
        let final = try await fixture.store.eventPage(buildId: build.id, after: seen)
        #expect(final.isLast)
        #expect(final.events.contains { $0.type == "build.cancelled" }, "\(final.events.map(\.type))")
        #expect(final.events.allSatisfy { $0.id > seen })
        // Cut short by its limit, a page of a final build is not the last.
        let first = try await fixture.store.eventPage(buildId: build.id, limit: 1)
        #expect(first.events.count == 1)
        #expect(!first.isLast)
        await #expect { try await fixture.store.eventPage(buildId: "bld_missing") } throws: { "\($0)".contains("bld_missing") }
    }

    @Test func partialPublishingOnlyWhenAsked() async throws {
        for allowPartial in [false, true] {
            let fixture = try await StoreFixture()
            let build = try await fixture.submit(
                platforms: ["linux/amd64", "linux/arm64"], maxAttempts: 1, allowPartial: allowPartial)
            let amd = try await fixture.join("amd", platforms: ["linux/amd64"])
            let arm = try await fixture.join("arm", platforms: ["linux/arm64"])
            let ok = try #require(try await fixture.poll(amd))
            let bad = try #require(try await fixture.poll(arm))
            _ = try await fixture.succeed(ok, agent: amd)
            try await fixture.verifyAll()
            try await fixture.store.complete(
                agentId: arm.id,
                CompleteRequest(jobId: bad.jobId, epoch: bad.epoch, outcome: .failed, exitCode: 2, reason: "RUN make failed"))
            let view = try await fixture.store.build(id: build.id)
            let due = try await fixture.store.duePublications().ready
            if allowPartial {
                #expect(view.state == .publishing)
                #expect(due.count == 1 && due[0].partial && due[0].children.count == 1)
            } else {
                #expect(view.state == .failed)
                #expect(due.isEmpty)
                #expect(view.jobs[1].reason == "RUN make failed (exit code 2)")
            }
        }
    }

    /// The verifier reads the waiting reports after every check; each is decoded once while it waits, and a new
    /// attempt's report (another digest) is read afresh, never answered from what an earlier attempt reported.
    @Test func waitingReportsAreReadOnceAndNeverStale() async throws {
        let fixture = try await StoreFixture()
        let build = try await fixture.submit(platforms: ["linux/amd64", "linux/arm64"], tags: ["2.0"], maxAttempts: 2)
        let amd = try await fixture.join("amd", platforms: ["linux/amd64"])
        let arm = try await fixture.join("arm", platforms: ["linux/arm64"])
        let first = try #require(try await fixture.poll(amd))
        let other = try #require(try await fixture.poll(arm))
        let firstDigest = try await fixture.succeed(first, agent: amd)
        _ = try await fixture.succeed(other, agent: arm)
        let read = try await fixture.store.pendingVerifications().ready
        #expect(try await fixture.store.pendingVerifications().ready == read)
        let waiting = try #require(read.first { $0.epoch == first.epoch })
        #expect(waiting.digest == firstDigest && waiting.childTag == "2.0-linux-amd64" && waiting.buildId == build.id)
        #expect(fixture.store.decodedVerifications.withLock { Set($0.keys) } == Set(read.map(\.epoch)))

        // Rejected: the job's second attempt reports another digest under another tag of its own.
        try await fixture.store.recordVerification(
            jobId: first.jobId, epoch: first.epoch, outcome: .rejected(reason: "wrong platform"))
        #expect(try await fixture.store.pendingVerifications().ready.map(\.epoch) == [other.epoch])
        #expect(fixture.store.decodedVerifications.withLock { Set($0.keys) } == [other.epoch])
        fixture.clock.advance(3600)
        let second = try #require(try await fixture.poll(amd))
        #expect(second.jobId == first.jobId && second.epoch != first.epoch)
        let secondDigest = try await fixture.succeed(second, agent: amd)
        let retried = try #require(try await fixture.store.pendingVerifications().ready.first { $0.epoch == second.epoch })
        #expect(retried.digest == secondDigest && retried.digest != firstDigest)
        #expect(retried.imageReference == "\(second.spec.image):\(second.spec.tag)")
    }

    @Test func pendingWorkSurvivesARestart() async throws {
        let fixture = try await StoreFixture()
        let build = try await fixture.submit(platforms: ["linux/amd64"])
        let agent = try await fixture.join("a", platforms: ["linux/amd64"])
        let lease = try #require(try await fixture.poll(agent))
        _ = try await fixture.succeed(lease, agent: agent)
        let restarted = try await fixture.reopen()
        #expect(try await restarted.pendingVerifications().ready.map(\.jobId) == [lease.jobId])
        try await restarted.recordVerification(jobId: lease.jobId, epoch: lease.epoch, outcome: .verified)
        let again = try await fixture.reopen()
        #expect(try await again.duePublications().ready.map(\.buildId) == [build.id])
    }
}
