import Foundation
import Logging
import ManifoldCore
import ManifoldRegistry
import ManifoldStore
import ServiceLifecycle

/// Publishes manifest lists from the outbox: once per build and set of verified digests, resumed after a
/// restart (pushing identical bytes again is harmless), retried with backoff on registry failures.
public struct Publisher: Service {
    let store: Store
    let registries: RegistryClientPool
    let notifier: WorkNotifier
    let metrics: CoordinatorMetrics
    let logger: Logger

    public init(store: Store, registries: RegistryClientPool, notifier: WorkNotifier, metrics: CoordinatorMetrics, logger: Logger)
    {
        self.store = store
        self.registries = registries
        self.notifier = notifier
        self.metrics = metrics
        self.logger = logger
    }

    public func run() async throws {
        await cancelWhenGracefulShutdown {
            while !Task.isCancelled {
                let generation = notifier.generation(of: .publication)
                for publication in (try? await store.duePublications()) ?? [] {
                    if Task.isCancelled { return }
                    await publish(publication)
                }
                var deadline = ContinuousClock.now + .seconds(30)
                if let next = try? await store.nextPublicationTime() {
                    let delay = max(0.05, next.timeIntervalSinceNow)
                    deadline = min(deadline, .now + .milliseconds(Int64(delay * 1000)))
                }
                await notifier.wait(for: .publication, after: generation, until: deadline)
            }
        }
    }

    func publish(_ publication: Publication) async {
        let started = ContinuousClock.now
        do {
            let target = try ImageReference(parsing: publication.image)
            let sources = try publication.children.map { child in
                AssemblySource(
                    reference: try ImageReference(parsing: child.imageReference).withDigest(child.digest),
                    expectedPlatform: child.platform)
            }
            let result = try await ManifestListAssembler(registries: registries, logger: logger).assemble(
                AssemblyRequest(target: target, tags: publication.tags, sources: sources))
            try await store.publicationSucceeded(
                id: publication.id, listDigest: result.digest, mediaType: result.plan.list.mediaType)
            metrics.increment("manifold_lists_published_total")
            let elapsed = ContinuousClock.now - started
            metrics.observeAssembly(seconds: Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18)
            logger.info("published list", metadata: ["build": "\(publication.buildId)", "digest": "\(result.digest)"])
            notifier.notify(.progress)
        } catch  where error is CancellationError || Task.isCancelled {
            // Shutting down mid-push: the row stays pending and is published after the restart; not a failure.
            logger.info("publishing interrupted by shutdown", metadata: ["build": "\(publication.buildId)"])
        } catch {
            metrics.increment("manifold_registry_errors_total")
            let retryable: Bool
            switch error {
            case is AssemblyError, is ImageReferenceError: retryable = false
            case let registryError as RegistryError: retryable = registryError.isRetryableForPublishing
            default: retryable = true
            }
            let reason = String(describing: error)
            logger.warning(
                "publishing failed",
                metadata: ["build": "\(publication.buildId)", "error": "\(reason)", "retryable": "\(retryable)"])
            try? await store.publicationFailed(id: publication.id, error: reason, retryable: retryable)
            notifier.notify([.progress, .publication])
        }
    }
}

extension RegistryError {
    /// Server-side trouble is worth another try later; a refusal of the content or the credentials is not.
    var isRetryableForPublishing: Bool {
        switch self {
        case .unexpectedStatus(_, _, let status, _, _): return status == 408 || status == 429 || status >= 500
        case .tokenRequestFailed, .transport: return true
        default: return false
        }
    }
}
