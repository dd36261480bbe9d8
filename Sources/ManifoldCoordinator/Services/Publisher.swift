import Foundation
import Logging
import ManifoldCore
import ManifoldRegistry
import ManifoldStore
import ServiceLifecycle
import Synchronization
import Tracing

/// Publishes manifest lists from the outbox: once per build and set of verified digests, resumed after a
/// restart (pushing identical bytes again is harmless), retried with backoff on registry failures.
public struct Publisher: Service {
    let store: Store
    let registries: RegistryClientPool
    let notifier: WorkNotifier
    let metrics: CoordinatorMetrics
    let logger: Logger
    /// The longest one publication's registry work may take before it is cancelled and retried later.
    let itemDeadline: Duration
    private let lanes: RegistryLanes
    /// A `publish` span per run of an outbox row, in the build's trace, with the registry calls under it.
    let tracing: CoordinatorTracing
    /// Children the verifier checked moments ago, by digest: planning a list then reads no child again. A run that
    /// fails forgets its children, so the next one reads the registry.
    let resolvedSources: ResolvedSourceCache

    public init(
        store: Store, registries: RegistryClientPool, notifier: WorkNotifier, metrics: CoordinatorMetrics, logger: Logger,
        perRegistry: Int = 4, itemDeadline: Duration = .seconds(600), tracing: CoordinatorTracing = .off,
        resolvedSources: ResolvedSourceCache = ResolvedSourceCache()
    ) {
        self.tracing = tracing
        self.resolvedSources = resolvedSources
        self.lanes = RegistryLanes(perRegistry: perRegistry)
        self.itemDeadline = itemDeadline
        self.store = store
        self.registries = registries
        self.notifier = notifier
        self.metrics = metrics
        self.logger = logger
    }

    public func run() async throws {
        let backoff = RecordingBackoff()
        await cancelWhenGracefulShutdown {
            await withDiscardingTaskGroup { group in
                while !Task.isCancelled {
                    let generation = notifier.generation(of: .publication)
                    let due: DuePublications
                    do {
                        due = try await store.duePublications()
                    } catch {
                        // Shutting down cancels the read; that is no failure to report.
                        if Task.isCancelled { break }
                        logger.error("reading the outbox failed", metadata: ["error": "\(error)"])
                        await notifier.wait(for: .publication, after: generation, until: .now + .seconds(5))
                        continue
                    }
                    for bad in due.unreadable {
                        // A row that cannot be read never stalls the rows behind it.
                        logger.error(
                            "an outbox row cannot be read; failing it",
                            metadata: ["row": "\(bad.id)", "build": "\(bad.buildId)", "error": "\(bad.error)"])
                        try? await store.publicationFailed(
                            id: bad.id, error: "the coordinator cannot read this publishing record: \(bad.error)",
                            retryable: false)
                    }
                    // The tags of rows that could not start on this pass: a later row moving one of them waits too.
                    var waiting = Set<String>()
                    for publication in due.ready where backoff.isDue(publication.id) {
                        if Task.isCancelled { return }
                        // Each row runs on its own, bounded per registry, so a registry that does not answer holds up
                        // only its own lists. Rows that move a common tag stay one at a time and in row order (the
                        // tag claims and pushes of two builds must not interleave); rows of one image with other
                        // tags (a release branch and `main`, every commit's own tag) publish side by side.
                        let key = "\(publication.id)"
                        let tags = Self.serialKeys(of: publication)
                        guard waiting.isDisjoint(with: tags),
                            lanes.start(item: key, registries: Self.registries(of: publication), serialKeys: tags)
                        else {
                            waiting.formUnion(tags)
                            continue
                        }
                        group.addTask {
                            await publish(publication, backoff: backoff)
                            lanes.finish(item: key)
                            notifier.notify(.publication)
                        }
                    }
                    var deadline = ContinuousClock.now + .seconds(30)
                    // Due rows are running, waiting for room (their finish notifies), or in `backoff`: only later rows count.
                    if let next = try? await store.nextPublicationTime(excluding: Set(due.ready.map(\.id))) {
                        let delay = max(0.05, next.timeIntervalSinceNow)
                        deadline = min(deadline, .now + .milliseconds(Int64(delay * 1000)))
                    }
                    if let next = backoff.next() { deadline = max(min(deadline, next), .now + .milliseconds(50)) }
                    await notifier.wait(for: .publication, after: generation, until: deadline)
                }
            }
        }
    }

    /// What a publication must not run beside: another row moving one of the same tags of the same image.
    static func serialKeys(of publication: Publication) -> Set<String> {
        Set(publication.tags.map { "\(publication.image):\($0)" })
    }

    /// The registries a publication talks to: the list's and those its children are copied from.
    static func registries(of publication: Publication) -> Set<String> {
        let names = [publication.image] + publication.children.map(\.imageReference)
        return Set(names.map { text in (try? ImageReference(parsing: text))?.registry ?? text })
    }

    /// The publisher's own backoff for rows whose outcome could not be recorded (the database refused the write):
    /// such a row stays due in the store, and without this the loop would retry it every 50 ms.
    final class RecordingBackoff: Sendable {
        private let table = Mutex([Int64: (failures: Int, until: ContinuousClock.Instant)]())
        func isDue(_ id: Int64) -> Bool { table.withLock { $0[id].map { $0.until <= .now } ?? true } }
        func next() -> ContinuousClock.Instant? { table.withLock { $0.values.map(\.until).min() } }
        func failed(_ id: Int64) {
            table.withLock { table in
                let failures = (table[id]?.failures ?? 0) + 1
                table[id] = (failures, .now + .milliseconds(min(500 << min(failures - 1, 7), 60_000)))
            }
        }
        func succeeded(_ id: Int64) { table.withLock { _ = $0.removeValue(forKey: id) } }

        private let refusals = Mutex([Int64: Int]())
        /// Counts one more unproven refusal of row `id`; returns the count.
        func refused(_ id: Int64) -> Int {
            refusals.withLock { table in
                table[id, default: 0] += 1
                return table[id]!
            }
        }
    }

    func publish(_ publication: Publication, backoff: RecordingBackoff = RecordingBackoff()) async {
        let started = ContinuousClock.now
        let store = self.store
        do {
            let target = try ImageReference(parsing: publication.image)
            let sources = try Self.sources(of: publication)
            let assembler = ManifestListAssembler(registries: registries, logger: logger, resolvedSources: resolvedSources)
            let tracing = self.tracing
            let trace = await tracing.buildContext(publication.buildId, in: store)
            let attributes: SpanAttributes = [
                "manifold.build": .string(publication.buildId), "manifold.outbox": .int64(publication.id),
                "manifold.image": .string(publication.image), "manifold.tags": .string(publication.tags.joined(separator: ",")),
            ]
            let result = try await tracing.withSpan("publish", parent: trace, attributes: attributes) {
                try await RegistryDeadlineExceeded.run(itemDeadline, registries: Self.registries(of: publication)) {
                    let plan = try await tracing.registry("read images", registry: target.registry, repository: target.repository)
                    {
                        try await assembler.plan(AssemblyRequest(target: target, tags: publication.tags, sources: sources))
                    }
                    // Re-checked right before the first tag moves: a cancel or a retry since the row was read, or a tag a
                    // later build holds, stops the push there.
                    return try await tracing.registry("push list", registry: target.registry, repository: target.repository) {
                        try await assembler.publish(plan) { tags in
                            switch try await store.claimPublication(id: publication.id, listDigest: plan.list.digest, tags: tags)
                            {
                            case .push(let claimed): return claimed
                            case .abandon(let reason): throw PublicationAbandoned(reason: reason)
                            case .claimedElsewhere(let replica, let until):
                                throw PublicationAbandoned(
                                    reason: "replica \(replica) is pushing its tags (claimed until \(until.formatted(.iso8601)))")
                            case .waitForTag(let held):
                                // The store made the row due again when that push ends or its claim runs out.
                                throw PublicationWaits(held: held)
                            }
                        }
                    }
                }
            }
            try await recordOutcome(publication, backoff: backoff) {
                try await store.publicationSucceeded(
                    id: publication.id, listDigest: result.digest, mediaType: result.plan.list.mediaType, tags: result.tags)
            }
            metrics.increment("manifold_lists_published_total")
            let elapsed = ContinuousClock.now - started
            metrics.observeAssembly(seconds: Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18)
            metrics.observe("manifold_publishing_duration_seconds", since: started, [("outcome", "published")])
            logger.info(
                "published list",
                metadata: ["build": "\(publication.buildId)", "digest": "\(result.digest)", "tags": "\(result.tags)"])
            notifier.notify(.progress, build: publication.buildId)
        } catch let waiting as PublicationWaits {
            logger.info(
                "publishing waits for another replica's tag push",
                metadata: ["build": "\(publication.buildId)", "reason": "\(waiting.held)"])
            notifier.notify(.progress, build: publication.buildId)
        } catch let abandoned as PublicationAbandoned {
            logger.info("publishing skipped", metadata: ["build": "\(publication.buildId)", "reason": "\(abandoned.reason)"])
            notifier.notify(.progress, build: publication.buildId)
        } catch  where error is CancellationError || Task.isCancelled {
            // Shutting down mid-push: the row stays due and is published after the restart; not a failure.
            logger.info("publishing interrupted by shutdown", metadata: ["build": "\(publication.buildId)"])
        } catch {
            forgetChildren(of: publication)
            metrics.countRegistryError(operation: "publish", error)
            metrics.observe("manifold_publishing_duration_seconds", since: started, [("outcome", "failed")])
            var (retryable, limit) = Self.classify(error)
            if let limit {
                // Unproven refusals are counted on their own: an outage before them must not use up their tries.
                retryable = backoff.refused(publication.id) < limit
            }
            let reason = String(describing: error)
            logger.warning(
                "publishing failed",
                metadata: ["build": "\(publication.buildId)", "error": "\(reason)", "retryable": "\(retryable)"])
            try? await recordOutcome(publication, backoff: backoff) {
                try await store.publicationFailed(id: publication.id, error: reason, retryable: retryable)
            }
            notifier.notify([.progress, .publication], build: publication.buildId)
        }
    }

    /// The list's children as the assembler takes them: each verified image by digest, with its platform.
    static func sources(of publication: Publication) throws -> [AssemblySource] {
        try publication.children.map { child in
            AssemblySource(
                reference: try ImageReference(parsing: child.imageReference).withDigest(child.digest),
                expectedPlatform: child.platform)
        }
    }

    /// Drops what the verifier left about `publication`'s children, so its next run reads them from the registry.
    private func forgetChildren(of publication: Publication) {
        for source in (try? Self.sources(of: publication)) ?? [] { resolvedSources.forget(source) }
    }

    /// Runs a store update for `publication`; when the store cannot take it, the row is tried again later with
    /// backoff instead of at once.
    private func recordOutcome(
        _ publication: Publication, backoff: RecordingBackoff, _ update: () async throws -> Void
    ) async throws {
        do {
            try await update()
            backoff.succeeded(publication.id)
        } catch {
            backoff.failed(publication.id)
            logger.error(
                "recording a publishing outcome failed; will try again",
                metadata: ["build": "\(publication.buildId)", "error": "\(error)"])
            throw error
        }
    }

    /// Whether a failure is worth another try, and how many such refusals a run may meet: registry outages are
    /// retried until the registry is back; a refusal that a re-check did not prove (a child the registry called
    /// unknown while HEAD finds it) a few times; a proven refusal never.
    static func classify(_ error: any Error) -> (retryable: Bool, maxAttempts: Int?) {
        switch error {
        case is AssemblyError, is ImageReferenceError: return (false, nil)
        case let registryError as RegistryError:
            if registryError.isRetryableForPublishing { return (true, nil) }
            if registryError.isUnprovenRefusal { return (true, 6) }
            return (false, nil)
        default: return (true, nil)
        }
    }
}

/// The outbox row was superseded or its build cancelled since it was read: nothing was tagged.
struct PublicationAbandoned: Error {
    var reason: String
}

/// Another replica is pushing one of the run's tags: nothing was tagged, and the run is due again once that push
/// ends or its claim runs out.
struct PublicationWaits: Error {
    var held: TagClaimedElsewhere
}

extension RegistryError {
    /// Server-side trouble is worth another try later; a refusal of the content or the credentials is not.
    var isRetryableForPublishing: Bool {
        switch self {
        case .unexpectedStatus(_, _, let status, _, _): return status == 408 || status == 429 || status >= 500
        case .transport(.destinationRefused, _): return false
        case .tokenRequestFailed, .transport: return true
        default: return false
        }
    }

    /// A refusal about content that may be a race with another push rather than a fact (a blob or child the
    /// registry calls unknown or invalid): it gets re-checked and retried before a build fails on it.
    var isUnprovenRefusal: Bool {
        let codes = Set(registryCodes)
        return !codes.isDisjoint(with: ["MANIFEST_BLOB_UNKNOWN", "BLOB_UNKNOWN", "DIGEST_INVALID", "BLOB_UPLOAD_UNKNOWN"])
    }
}
