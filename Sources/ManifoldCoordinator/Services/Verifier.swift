import Foundation
import Logging
import ManifoldCore
import ManifoldRegistry
import ManifoldStore
import ServiceLifecycle
import Synchronization

/// Checks every digest an agent reports against the registry before the platform counts as done:
/// the manifest must exist and its config must be the job's platform (os, architecture, variant, Windows OS
/// build). An image the agent pushed to another repository or registry is copied into the build's repository;
/// either way it gets the job's per-platform tag there, so registry retention never deletes a list's child.
///
/// Registry trouble (unreachable, 5xx, credentials) postpones a check with backoff and an event; after
/// `giveUpAfter` the attempt fails with the registry's reason, and the job's retry policy takes over.
///
/// Replicas on one database share the reports: each check starts with a claim on the report
/// (``Store/claimVerification(jobId:epoch:)``), renewed while the check runs, and a report another replica claimed
/// is left to it. A replica whose claim ran out and was taken over moves no tag and records nothing; a dead
/// replica's claims run out after the claim TTL and another replica checks its reports.
public struct Verifier: Service {
    let store: Store
    let registries: RegistryClientPool
    let notifier: WorkNotifier
    let metrics: CoordinatorMetrics
    let logger: Logger
    /// The first wait after the registry could not answer; doubled each time, capped at `maxRetryDelay`.
    let retryDelay: Duration
    let maxRetryDelay: Duration
    let giveUpAfter: Duration
    /// The longest one report's registry work may take before it is cancelled and tried again later.
    let itemDeadline: Duration
    /// How often a running check renews its claim on the report: a third of the claim TTL.
    let claimRenewal: Duration
    private let postponed = Postponements()
    private let lanes: RegistryLanes
    /// A `verify` span per check, in the build's trace, with the registry calls under it.
    let tracing: CoordinatorTracing
    /// Where a checked image's manifests and platforms are left for the publisher, which then need not read them
    /// again. The check itself always reads the registry.
    let resolvedSources: ResolvedSourceCache

    /// Checks the registry could not answer yet, by attempt epoch (memory only: a restart checks at once).
    final class Postponements: Sendable {
        let table = Mutex([Int64: Postponement]())
        func withLock<R>(_ body: (inout [Int64: Postponement]) -> R) -> R { table.withLock { body(&$0) } }
    }

    struct Postponement {
        var since: ContinuousClock.Instant
        var failures: Int
        var nextTry: ContinuousClock.Instant
    }

    public init(
        store: Store, registries: RegistryClientPool, notifier: WorkNotifier, metrics: CoordinatorMetrics, logger: Logger,
        retryDelay: Duration = .seconds(2), maxRetryDelay: Duration = .seconds(15), giveUpAfter: Duration = .seconds(900),
        perRegistry: Int = 4, itemDeadline: Duration = .seconds(600), claimRenewal: Duration? = nil,
        tracing: CoordinatorTracing = .off, resolvedSources: ResolvedSourceCache = ResolvedSourceCache()
    ) {
        self.tracing = tracing
        self.resolvedSources = resolvedSources
        self.lanes = RegistryLanes(perRegistry: perRegistry)
        self.claimRenewal = claimRenewal ?? .seconds(store.settings.verificationClaimTTL / 3)
        self.itemDeadline = itemDeadline
        self.store = store
        self.registries = registries
        self.notifier = notifier
        self.metrics = metrics
        self.logger = logger
        self.retryDelay = retryDelay
        self.maxRetryDelay = maxRetryDelay
        self.giveUpAfter = giveUpAfter
    }

    public func run() async throws {
        await cancelWhenGracefulShutdown {
            await withDiscardingTaskGroup { group in
                // Each waiting report's registries, parsed once (the loop offers every waiting report on each pass).
                var registriesByEpoch: [Int64: Set<String>] = [:]
                while !Task.isCancelled {
                    let generation = notifier.generation(of: .verification)
                    let due: DueVerifications
                    do {
                        due = try await store.pendingVerifications()
                    } catch {
                        // Shutting down cancels the read; that is no failure to report.
                        if Task.isCancelled { break }
                        logger.error("reading the reports to verify failed", metadata: ["error": "\(error)"])
                        await notifier.wait(for: .verification, after: generation, until: .now + .seconds(5))
                        continue
                    }
                    for bad in due.unreadable {
                        // A report that cannot be read fails its attempt; it never stalls the reports behind it.
                        guard let claim = try? await store.claimVerification(jobId: bad.jobId, epoch: bad.epoch) else {
                            continue
                        }
                        logger.error(
                            "a report cannot be read; failing its attempt",
                            metadata: ["job": "\(bad.jobId)", "error": "\(bad.error)"])
                        _ = try? await store.recordVerification(
                            jobId: bad.jobId, epoch: bad.epoch,
                            outcome: .rejected(reason: "the coordinator cannot read this report: \(bad.error)"), claim: claim)
                    }
                    let pending = due.ready
                    let now = ContinuousClock.now
                    for item in pending where (postponed.withLock { $0[item.epoch]?.nextTry }).map({ $0 <= now }) ?? true {
                        if Task.isCancelled { return }
                        // Each report runs on its own, bounded per registry: a registry that does not answer holds
                        // up only the reports that need it. Reports for the same child tag stay one at a time, in
                        // order, as the tag's claim-then-push relies on.
                        let key = "\(item.epoch)"
                        if lanes.isRunning(key) { continue }
                        let registries = registriesByEpoch[item.epoch] ?? Self.registries(of: item)
                        registriesByEpoch[item.epoch] = registries
                        guard lanes.start(item: key, registries: registries, serialKey: "\(item.image)|\(item.childTag)")
                        else { continue }
                        group.addTask {
                            await verify(item)
                            lanes.finish(item: key)
                            notifier.notify(.verification)
                        }
                    }
                    let live = Set(pending.map(\.epoch))
                    registriesByEpoch = registriesByEpoch.filter { live.contains($0.key) }
                    // Reports due already are running or waiting for room (a finishing check notifies): only later
                    // retries, and claims of other replicas running out, set the wake-up time.
                    let retry = postponed.withLock { table -> ContinuousClock.Instant? in
                        table = table.filter { live.contains($0.key) }
                        return table.values.map(\.nextTry).filter { $0 > now }.min()
                    }
                    let takeover = due.nextClaimExpiry.map { expiry in
                        ContinuousClock.now + .seconds(max(0.5, expiry.timeIntervalSince(store.currentTime()) + 0.05))
                    }
                    let next = [retry, takeover].compactMap { $0 }.min()
                    await notifier.wait(for: .verification, after: generation, until: next ?? .now + .seconds(30))
                }
            }
        }
    }

    /// The registries a report's check talks to: the build's and the one the agent pushed to.
    static func registries(of pending: PendingVerification) -> Set<String> {
        let names = [pending.image, pending.imageReference].map { text in
            (try? ImageReference(parsing: text))?.registry ?? text
        }
        return Set(names)
    }

    /// Claims the report, checks it while renewing the claim, and records the outcome (fenced by the claim).
    func verify(_ pending: PendingVerification) async {
        let claim: VerificationClaim
        do {
            guard let taken = try await store.claimVerification(jobId: pending.jobId, epoch: pending.epoch) else {
                // Another replica checks it (its claim runs out if that replica dies), or it was decided meanwhile.
                logger.debug("the report is another replica's to verify", metadata: ["job": "\(pending.jobId)"])
                return
            }
            claim = taken
        } catch {
            logger.error("claiming a report to verify failed", metadata: ["job": "\(pending.jobId)", "error": "\(error)"])
            delay(pending)
            return
        }
        metrics.increment("manifold_verifications_total")
        let checkStarted = ContinuousClock.now
        let outcome: VerificationOutcome
        let canonical: String?
        switch await runCheck(pending, claim: claim) {
        case .waitsForTag:
            // Another replica's push holds the tag; this check holds no claim on it.
            return
        case .stopped:
            // Nothing is recorded, so the claim on the child tag (if the check took one) ends here; recording an
            // outcome ends it in the same write.
            return await releaseChildTag(pending)
        case .decided(let decided, let reference):
            (outcome, canonical) = (decided, reference)
        }
        postponed.withLock { _ = $0.removeValue(forKey: pending.epoch) }
        metrics.observe(
            "manifold_verification_duration_seconds", since: checkStarted,
            [("outcome", outcome == .verified ? "verified" : "rejected")])
        do {
            let recorded = try await store.recordVerification(
                jobId: pending.jobId, epoch: pending.epoch, outcome: outcome, canonicalReference: canonical, claim: claim)
            if !recorded {
                logger.info(
                    "the outcome of a check was not recorded: another replica took the report over, or it was decided",
                    metadata: ["job": "\(pending.jobId)"])
            }
            // Only a rejection can queue the job again (a retry): a verified report is no new work for held polls.
            // Event streams of this build alone follow it.
            notifier.notify(
                outcome == .verified ? [.publication, .progress] : [.publication, .progress, .work], build: pending.buildId)
        } catch {
            logger.error("recording a verification failed", metadata: ["job": "\(pending.jobId)", "error": "\(error)"])
        }
    }

    /// How a check ended.
    enum CheckEnd {
        /// An outcome to record, and the reference the list is assembled from when it differs from the reported one.
        case decided(VerificationOutcome, canonical: String?)
        /// Nothing to record now: the claim on the report was lost, shutdown came, or the check was postponed.
        case stopped
        /// Another replica's push of the child tag is under way; the check runs again after a retry delay.
        case waitsForTag
    }

    /// Runs the check of `pending` under `claim` and says how it ended; registry failures worth waiting out are
    /// postponed here.
    private func runCheck(_ pending: PendingVerification, claim: VerificationClaim) async -> CheckEnd {
        let trace = await tracing.buildContext(pending.buildId, in: store)
        do {
            let canonical = try await tracing.withSpan(
                "verify", parent: trace,
                attributes: [
                    "manifold.build": .string(pending.buildId), "manifold.job": .string(pending.jobId),
                    "manifold.platform": .string(pending.platform.description), "manifold.epoch": .int64(pending.epoch),
                    "manifold.digest": .string(pending.digest.description),
                ]
            ) {
                try await holding(claim) {
                    try await RegistryDeadlineExceeded.run(itemDeadline, registries: Self.registries(of: pending)) {
                        try await check(pending, claim: claim)
                    }
                }
            }
            return .decided(.verified, canonical: canonical)
        } catch let lost as VerificationClaimLost {
            logger.warning("stopped verifying a report", metadata: ["job": "\(pending.jobId)", "reason": "\(lost)"])
            postponed.withLock { _ = $0.removeValue(forKey: pending.epoch) }
            return .stopped
        } catch let held as TagClaimedElsewhere {
            // Not a registry failure: another replica's PUT of the child tag is under way. The check runs again after
            // one retry delay, by then usually past that push (or its claim ran out); this replica keeps the report.
            logger.info(
                "a child tag push waits for another replica's", metadata: ["job": "\(pending.jobId)", "reason": "\(held)"])
            delay(pending)
            return .waitsForTag
        } catch let error as AssemblyError {
            return .decided(.rejected(reason: error.description), canonical: nil)
        } catch let error as ImageReferenceError {
            return .decided(.rejected(reason: "the agent reported an invalid image reference: \(error)"), canonical: nil)
        } catch let error as RegistryError {
            switch error {
            case .notFound where await reportedImageIsPresent(pending):
                // Proven present by a HEAD: the 404 was a race with another push, not a verdict.
                guard let reason = await postpone(pending, error: error) else { return .stopped }
                return .decided(.rejected(reason: reason), canonical: nil)
            case .notFound, .digestMismatch, .protocolViolation, .tooLarge, .registryNotAllowed, .tooManyIndexEntries,
                .copyLimitExceeded:
                return .decided(.rejected(reason: error.description), canonical: nil)
            case .transport(.destinationRefused, _):
                // A realm or redirect the rules refuse stays refused; waiting would not change it.
                return .decided(.rejected(reason: error.description), canonical: nil)
            default:
                guard let reason = await postpone(pending, error: error) else { return .stopped }
                return .decided(.rejected(reason: reason), canonical: nil)
            }
        } catch is CancellationError {
            // Shutting down: another replica (or this one after its restart) checks the report, at once.
            try? await store.releaseVerificationClaim(claim)
            return .stopped
        } catch {
            guard let reason = await postpone(pending, error: error) else { return .stopped }
            return .decided(.rejected(reason: reason), canonical: nil)
        }
    }

    /// Runs `body` (the check) while renewing `claim` every ``claimRenewal``; when the claim is lost (another
    /// replica took the report over after it ran out), `body` is cancelled and ``VerificationClaimLost`` thrown.
    /// A renewal the database refuses for a moment is tried again; the fenced writes keep a late result out.
    func holding<T: Sendable>(
        _ claim: VerificationClaim, _ body: @escaping @Sendable () async throws -> T
    ) async throws -> T {
        try await withThrowingTaskGroup(of: T?.self) { group in
            group.addTask { try await body() }
            group.addTask {
                var current = claim
                while !Task.isCancelled {
                    try? await Task.sleep(for: claimRenewal)
                    if Task.isCancelled { break }
                    do {
                        guard let renewed = try await store.renewVerificationClaim(current) else {
                            throw VerificationClaimLost(jobId: claim.jobId, epoch: claim.epoch)
                        }
                        current = renewed
                    } catch let lost as VerificationClaimLost {
                        throw lost
                    } catch {
                        logger.warning(
                            "renewing a verification claim failed; trying again",
                            metadata: ["job": "\(claim.jobId)", "error": "\(error)"])
                    }
                }
                return nil
            }
            defer { group.cancelAll() }
            while let result = try await group.next() {
                if let value = result { return value }
            }
            throw CancellationError()
        }
    }

    /// Checks the platform and makes the image exist under its child tag in the build's repository, the tag only
    /// while this replica still holds `claim`. Returns the reference the list is assembled from when it differs
    /// from the reported one.
    func check(_ pending: PendingVerification, claim: VerificationClaim) async throws -> String? {
        let target = try ImageReference(parsing: pending.image)
        let reported = try ImageReference(parsing: pending.imageReference)
        let source = reported.withDigest(pending.digest)
        let assembler = ManifestListAssembler(registries: registries, logger: logger)
        let destination = try registries.client(for: target.registry)
        // Where the child tag points now, asked while the image is read: the answer does not depend on the reads,
        // and the claim below is what decides whether the tag moves.
        async let tagged = tracing.registry(
            "HEAD manifest", registry: target.registry, repository: target.repository,
            {
                try await destination.headManifest(repository: target.repository, reference: pending.childTag)
            })
        let plan = try await tracing.registry("read image", registry: reported.registry, repository: reported.repository) {
            try await assembler.plan(
                AssemblyRequest(
                    target: target, tags: ["verify"],
                    sources: [AssemblySource(reference: source, expectedPlatform: pending.platform)]))
        }
        let budget = CopyBudget(limit: registries.configuration.limits.maxCopiedBytes)
        for child in plan.children {
            _ = try await tracing.registry("copy image", registry: target.registry, repository: target.repository) {
                try await assembler.copyIfNeeded(child, into: target, budget: budget)
            }
        }
        let sameRepository = reported.registry == target.registry && reported.repository == target.repository
        // The reported manifest's bytes, as the plan read them: an image is a child of the plan, an index (e.g. with
        // attestations) the source the plan flattened.
        let manifest: RawManifest
        if let child = plan.children.first(where: { $0.descriptor.digest == pending.digest }) {
            manifest = child.manifest
        } else {
            if let index = plan.indexes.first(where: { $0.digest == pending.digest }) {
                manifest = index
            } else {
                manifest = try await tracing.registry(
                    "GET manifest", registry: reported.registry, repository: reported.repository
                ) {
                    try await registries.client(for: reported.registry).fetchManifest(
                        repository: reported.repository, reference: pending.digest.description)
                }
            }
            if !sameRepository,
                try await tracing.registry(
                    "HEAD manifest", registry: target.registry, repository: target.repository,
                    {
                        try await destination.headManifest(repository: target.repository, reference: pending.digest.description)
                    }) == nil
            {
                // Bring the index itself over; its children are there now.
                _ = try await tracing.registry("PUT manifest", registry: target.registry, repository: target.repository) {
                    try await destination.pushManifest(
                        repository: target.repository, reference: pending.digest.description, manifest: manifest)
                }
            }
        }
        // Only the coordinator writes the stable child tag, after the checks above and a claim right before the
        // PUT (the attempt still current, this replica still holding the report, the build not cancelled, no later
        // build holding the tag); a tag that already names this very manifest is left alone (no re-push racing
        // another list's push).
        if try await tagged?.digest != manifest.digest,
            try await store.claimChildTag(
                jobId: pending.jobId, epoch: pending.epoch, childTag: pending.childTag, digest: manifest.digest, claim: claim)
        {
            // The tag stays claimed for this PUT only; whether it landed or failed, another replica may push it next.
            // A landed PUT's claim ends with the recording of the outcome, in the same write.
            do {
                _ = try await tracing.registry("PUT manifest", registry: target.registry, repository: target.repository) {
                    try await destination.pushManifest(
                        repository: target.repository, reference: pending.childTag, manifest: manifest)
                }
            } catch {
                await releaseChildTag(pending)
                throw error
            }
        }
        // The publisher names the image where it now lives: the build's repository, by digest.
        let published = AssemblySource(reference: target.withDigest(pending.digest), expectedPlatform: pending.platform)
        resolvedSources.remember(
            plan.children.map { child in
                var moved = child
                moved.source = target.withDigest(child.descriptor.digest)
                moved.requested = published.reference
                return moved
            }, for: published)
        return sameRepository ? nil : try target.withTag(pending.childTag).description
    }

    /// Ends this attempt's claim on its child tag; if the database refuses, the claim runs out by itself.
    private func releaseChildTag(_ pending: PendingVerification) async {
        do {
            try await store.releaseChildTag(epoch: pending.epoch)
        } catch {
            logger.warning(
                "releasing a child tag claim failed; it runs out by itself",
                metadata: ["job": "\(pending.jobId)", "error": "\(error)"])
        }
    }

    /// Whether a HEAD finds the reported digest where the agent said it pushed it.
    func reportedImageIsPresent(_ pending: PendingVerification) async -> Bool {
        guard let reported = try? ImageReference(parsing: pending.imageReference),
            let client = try? registries.client(for: reported.registry),
            let found = try? await client.headManifest(repository: reported.repository, reference: pending.digest.description)
        else { return false }
        return found.digest == pending.digest
    }

    /// Holds a report back for one `retryDelay` after this replica could not even claim it (the database refused),
    /// so a failing database is not asked again in a tight loop.
    func delay(_ pending: PendingVerification) {
        let now = ContinuousClock.now
        postponed.withLock { table in
            var entry = table[pending.epoch] ?? Postponement(since: now, failures: 0, nextTry: now)
            entry.nextTry = now + retryDelay
            table[pending.epoch] = entry
        }
    }

    /// Records a failed check for a retry with backoff (with an event the first time and every fifth), or
    /// returns the reason to fail the attempt once `giveUpAfter` has passed.
    func postpone(_ pending: PendingVerification, error: any Error) async -> String? {
        metrics.countRegistryError(operation: "verify", error)
        let now = ContinuousClock.now
        let entry = postponed.withLock { table -> Postponement in
            var entry = table[pending.epoch] ?? Postponement(since: now, failures: 0, nextTry: now)
            entry.failures += 1
            let factor = 1 << min(entry.failures - 1, 16)
            entry.nextTry = now + min(retryDelay * factor, maxRetryDelay)
            table[pending.epoch] = entry
            return entry
        }
        let reason = (error as? RegistryError)?.description ?? "\(error)"
        if now - entry.since >= giveUpAfter {
            return "the registry could not confirm the pushed image for \(giveUpAfter): \(reason)"
        }
        logger.warning(
            "verification postponed",
            metadata: ["job": "\(pending.jobId)", "failures": "\(entry.failures)", "error": "\(reason)"])
        if entry.failures == 1 || entry.failures % 5 == 0 {
            try? await store.recordEvent(
                buildId: pending.buildId, jobId: pending.jobId, type: "job.verification_postponed",
                data: ["reason": reason, "failures": "\(entry.failures)"])
            notifier.notify(.progress, build: pending.buildId)
        }
        return nil
    }
}

/// A check stopped because this replica lost its claim on the report: it ran out and another replica took it over.
struct VerificationClaimLost: Error, CustomStringConvertible {
    var jobId: String
    var epoch: Int64

    var description: String {
        "another replica took over verifying attempt \(epoch) of job \(jobId) after this replica's claim ran out; "
            + "that replica decides it"
    }
}
