import Foundation
import Logging
import ManifoldCore
import ManifoldRegistry
import ManifoldStore
import ServiceLifecycle

/// Checks every digest an agent reports against the registry before the platform counts as done:
/// the manifest must exist in the build's repository (it is copied there if the agent pushed elsewhere in the
/// same registry) and its config must be the job's platform (os, architecture, variant, Windows OS build).
public struct Verifier: Service {
    let store: Store
    let registries: RegistryClientPool
    let notifier: WorkNotifier
    let metrics: CoordinatorMetrics
    let logger: Logger
    /// How long to wait before checking again after the registry could not be reached.
    let retryDelay: Duration

    public init(
        store: Store, registries: RegistryClientPool, notifier: WorkNotifier, metrics: CoordinatorMetrics, logger: Logger,
        retryDelay: Duration = .seconds(5)
    ) {
        self.store = store
        self.registries = registries
        self.notifier = notifier
        self.metrics = metrics
        self.logger = logger
        self.retryDelay = retryDelay
    }

    public func run() async throws {
        await cancelWhenGracefulShutdown {
            while !Task.isCancelled {
                let generation = notifier.generation
                var transientFailure = false
                for pending in (try? await store.pendingVerifications()) ?? [] {
                    if Task.isCancelled { return }
                    transientFailure = await verify(pending) == false || transientFailure
                }
                let wait: Duration = transientFailure ? retryDelay : .seconds(30)
                await notifier.wait(after: generation, until: .now + wait)
            }
        }
    }

    /// Returns false when the registry could not give an answer (retried later).
    func verify(_ pending: PendingVerification) async -> Bool {
        metrics.increment("manifold_verifications_total")
        let outcome: VerificationOutcome
        do {
            let target = try ImageReference(parsing: pending.image)
            let source = try ImageReference(parsing: pending.imageReference).withDigest(pending.digest)
            let assembler = ManifestListAssembler(registries: registries, logger: logger)
            let plan = try await assembler.plan(
                AssemblyRequest(
                    target: target, tags: ["verify"],
                    sources: [AssemblySource(reference: source, expectedPlatform: pending.platform)]))
            for child in plan.children where child.source.registry == target.registry {
                _ = try await assembler.copyIfNeeded(child, into: target)
            }
            outcome = .verified
        } catch let error as AssemblyError {
            outcome = .rejected(reason: error.description)
        } catch let error as RegistryError {
            switch error {
            case .notFound, .digestMismatch, .protocolViolation:
                outcome = .rejected(reason: error.description)
            default:
                metrics.increment("manifold_registry_errors_total")
                logger.warning("verification postponed", metadata: ["job": "\(pending.jobId)", "error": "\(error)"])
                return false
            }
        } catch let error as ImageReferenceError {
            outcome = .rejected(reason: "the agent reported an invalid image reference: \(error)")
        } catch {
            metrics.increment("manifold_registry_errors_total")
            logger.warning("verification postponed", metadata: ["job": "\(pending.jobId)", "error": "\(error)"])
            return false
        }
        do {
            try await store.recordVerification(jobId: pending.jobId, epoch: pending.epoch, outcome: outcome)
            notifier.notifyAll()
        } catch {
            logger.error("recording a verification failed", metadata: ["job": "\(pending.jobId)", "error": "\(error)"])
            return false
        }
        return true
    }
}
