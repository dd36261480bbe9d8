import Foundation
import ManifoldCore
import Synchronization

extension ManifestListAssembler {
    /// Copies children into the target repository where needed, pushes the list under every tag (by digest when no
    /// tag is left to push), and reads it back: every tag must return exactly the pushed bytes and every child must
    /// exist.
    ///
    /// `beforeTagging` runs right before the list is first pushed, and again before a push that follows a refusal the
    /// children's HEADs disproved: it receives the tags and returns those to push (a coordinator re-checks there that
    /// the push is still wanted, and which tags are still its to move); throwing from it pushes nothing. The list is
    /// not pushed by digest first: the first tag's PUT stores it under its digest too (the registry answers with that
    /// digest), so a separate PUT would cost every publication one more sequential round trip
    /// (`deploy/bench/end-to-end.sh`) and leave an untagged list behind when the re-check says stop.
    public func publish(
        _ plan: AssemblyPlan, beforeTagging: (@Sendable ([String]) async throws -> [String])? = nil
    ) async throws -> AssemblyResult {
        let target = plan.request.target
        let registry = try registries.client(for: target.registry)

        var copied = 0
        let budget = CopyBudget(limit: registries.configuration.limits.maxCopiedBytes)
        for child in plan.children {
            if try await copyIfNeeded(child, into: target, budget: budget) { copied += 1 }
        }

        // A refusal that the children's HEADs disprove is pushed again, re-checked first, after a short pause: a
        // registry that validates the list while another push rewrites one of its children in place (distribution's
        // filesystem storage) answers so for a few milliseconds. The caller's retry policy takes over after that.
        var tags: [String]
        var racedRefusals = 0
        while true {
            tags = try await beforeTagging?(plan.request.allTags) ?? plan.request.allTags
            do {
                if let first = tags.first {
                    progress("pushing list \(target.name):\(first) (\(plan.list.digest))")
                    try await pushList(plan, reference: first, registry: registry)
                } else {
                    // Every tag is held elsewhere: the list still exists by digest, as the result names it.
                    progress("pushing list \(target.name)@\(plan.list.digest)")
                    try await pushList(plan, reference: plan.list.digest.description, registry: registry)
                }
                break
            } catch let raced as RacedListRefusal {
                guard racedRefusals < Self.racedRefusalRetries else { throw raced.refusal }
                racedRefusals += 1
                progress("the registry refused the list although every child is there; pushing it again")
                logger.info(
                    "a list push refused although every child is there is pushed again",
                    metadata: ["target": "\(target.name)", "refusal": "\(raced.refusal)", "retry": "\(racedRefusals)"])
                try await registries.configuration.retry.sleep(Self.racedRefusalPause(after: racedRefusals))
            }
        }
        for tag in tags.dropFirst() {
            progress("tagging \(target.name):\(tag)")
            try await registry.pushManifest(repository: target.repository, reference: tag, manifest: plan.list)
        }

        // The checks after the push are independent reads: they run side by side, eight at a time (each tag read
        // back, each child asked for), and the first failure is thrown.
        enum Check: Sendable {
            case tag(String)
            case child(String)
        }
        let checks = tags.map(Check.tag) + plan.children.map { Check.child($0.descriptor.digest.description) }
        try await withThrowingTaskGroup(of: Void.self) { group in
            for (index, check) in checks.enumerated() {
                if index >= 8 { try await group.next() }
                group.addTask {
                    switch check {
                    case .tag(let tag):
                        let stored = try await registry.fetchManifest(repository: target.repository, reference: tag)
                        guard stored.bytes == plan.list.bytes else {
                            throw AssemblyError.readBackMismatch(tag: tag, expected: plan.list.digest, actual: stored.digest)
                        }
                    case .child(let digest):
                        guard try await registry.headManifest(repository: target.repository, reference: digest) != nil else {
                            throw AssemblyError.childMissing(
                                child: digest, target: target.name, registryMessage: "HEAD after publishing found nothing")
                        }
                    }
                }
            }
            try await group.waitForAll()
        }
        return AssemblyResult(
            plan: plan, reference: target.withDigest(plan.list.digest), tags: tags, copiedChildren: copied)
    }

    /// How many times one publication pushes a list again after a refusal its children's HEADs disproved.
    static let racedRefusalRetries = 2

    /// The pause before such a push: 100 ms more each time, plus up to 100 ms so that racing pushes spread out.
    static func racedRefusalPause(after refusals: Int) -> Duration {
        .milliseconds(100 * refusals + Int.random(in: 0..<100))
    }

    /// The list's first PUT. A registry refusing it for a missing or invalid child (`MANIFEST_BLOB_UNKNOWN`,
    /// `DIGEST_INVALID`) is asked which children are really missing, so the error names them rather than the whole
    /// list; when every child is there, the refusal is thrown as a ``RacedListRefusal``.
    private func pushList(_ plan: AssemblyPlan, reference: String, registry: RegistryClient) async throws {
        let target = plan.request.target
        do {
            try await registry.pushManifest(repository: target.repository, reference: reference, manifest: plan.list)
        } catch let error as RegistryError
            where !Set(error.registryCodes).isDisjoint(with: ["MANIFEST_BLOB_UNKNOWN", "DIGEST_INVALID"])
        {
            // If the registry cannot answer those HEADs either, its original refusal is the better report.
            var missing: [String] = []
            for child in plan.children {
                let digest = child.descriptor.digest.description
                let found: Descriptor??
                do {
                    found = .some(try await registry.headManifest(repository: target.repository, reference: digest))
                } catch {
                    found = nil
                }
                guard let found else { throw error }
                if found == nil { missing.append("\(digest) (from \(child.source))") }
            }
            // Every child answers a HEAD: the refusal proves nothing missing, so it stays the registry's error
            // (worth another try) rather than a verdict on the children.
            guard !missing.isEmpty else { throw RacedListRefusal(refusal: error) }
            // A HEAD that finds nothing proves the registry right only where it called a child unknown.
            guard error.registryCodes.contains("MANIFEST_BLOB_UNKNOWN") else { throw error }
            throw AssemblyError.childMissing(
                child: missing.joined(separator: ", "), target: target.name, registryMessage: RegistryError.render(error.details))
        }
    }

    /// Makes `child` exist in the target repository: nothing to do when it is already there; blob mounts
    /// within one registry; a streamed copy through a temporary file across registries. Returns whether it copied.
    ///
    /// Bytes copied through Manifold count against `budget` (share one budget across the children of one list);
    /// a copy that would exceed it fails with `RegistryError.copyLimitExceeded` before its download starts.
    public func copyIfNeeded(_ child: AssembledChild, into target: ImageReference, budget: CopyBudget) async throws -> Bool {
        let source = child.source
        if source.registry == target.registry, source.repository == target.repository { return false }
        let destination = try registries.client(for: target.registry)
        if try await destination.headManifest(repository: target.repository, reference: child.descriptor.digest.description)
            != nil
        {
            return false
        }
        progress("copying \(source) into \(target.name)")
        let origin = try registries.client(for: source.registry)
        let sameRegistry = source.registry == target.registry
        try await withThrowingTaskGroup(of: Void.self) { group in
            var running = 0
            for blob in Self.distributableBlobs(child.blobs) {
                if running >= 4 {
                    try await group.next()
                    running -= 1
                }
                group.addTask {
                    try await copyBlob(
                        blob, from: source, origin: origin, to: target, destination: destination, sameRegistry: sameRegistry,
                        budget: budget)
                }
                running += 1
            }
            try await group.waitForAll()
        }
        try await destination.pushManifest(
            repository: target.repository, reference: child.descriptor.digest.description, manifest: child.manifest)
        return true
    }

    private func copyBlob(
        _ blob: Descriptor, from source: ImageReference, origin: RegistryClient, to target: ImageReference,
        destination: RegistryClient, sameRegistry: Bool, budget: CopyBudget
    ) async throws {
        if try await destination.blobSize(repository: target.repository, digest: blob.digest) != nil { return }
        var session: URL? = nil
        if sameRegistry {
            switch try await destination.mountBlob(repository: target.repository, digest: blob.digest, from: source.repository) {
            case .mounted: return
            case .uploadStarted(let location): session = location
            }
        }
        guard blob.size >= 0, budget.reserve(blob.size) else {
            throw RegistryError.copyLimitExceeded(
                source: source.description, target: target.name, bytes: budget.used + max(blob.size, 0), limit: budget.limit)
        }
        let scratch = FileManager.default.temporaryDirectory.appendingPathComponent("manifold-blob-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: scratch) }
        // No more than the descriptor's size is written to disk: a registry that streams on is cut off there.
        let size = try await origin.downloadBlob(
            repository: source.repository, digest: blob.digest, to: scratch, maxSize: blob.size)
        try await destination.uploadBlob(
            repository: target.repository, digest: blob.digest, file: scratch, size: size, session: session)
    }

    /// Layers marked non-distributable (Windows base layers with `urls`) stay where they are, as registries expect.
    static func distributableBlobs(_ blobs: [Descriptor]) -> [Descriptor] {
        var seen = Set<Digest>()
        return blobs.filter { blob in
            let foreign =
                blob.mediaType == MediaType.dockerForeignLayerTarGzip || blob.mediaType.contains(".nondistributable.")
                || !(blob.urls ?? []).isEmpty
            return !foreign && seen.insert(blob.digest).inserted
        }
    }
}

/// A list PUT refused for a child that a HEAD right after finds: `publish` pushes again a few times, then throws
/// `refusal`.
struct RacedListRefusal: Error {
    var refusal: RegistryError
}

/// How many bytes one assembly may still copy through Manifold; shared by the concurrent copies of its children.
public final class CopyBudget: Sendable {
    public let limit: Int64
    private let spent = Mutex<Int64>(0)

    public init(limit: Int64) { self.limit = limit }

    /// The bytes reserved so far.
    public var used: Int64 { spent.withLock { $0 } }

    /// Reserves `bytes`; false (and nothing reserved) when that would pass the limit.
    func reserve(_ bytes: Int64) -> Bool {
        spent.withLock { spent in
            let (total, overflow) = spent.addingReportingOverflow(bytes)
            guard !overflow, total <= limit else { return false }
            spent = total
            return true
        }
    }
}
