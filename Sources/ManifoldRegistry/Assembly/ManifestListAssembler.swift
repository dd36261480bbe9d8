import Foundation
import Logging
import ManifoldCore

/// Builds and publishes a multi-platform manifest list from images that already sit in registries.
///
/// Each child is fetched as stored and its platform read from its config, never guessed; children that
/// are themselves indexes are flattened (keeping attestation manifests after the images); children in
/// other repositories or registries are copied into the target first. The same inputs always produce
/// the same bytes, so re-publishing an unchanged set is a no-op for the registry.
///
/// ```swift
/// let assembler = ManifestListAssembler(registries: RegistryClientPool())
/// let result = try await assembler.assemble(AssemblyRequest(
///     target: try ImageReference(parsing: "registry.local/app"), tags: ["1.0", "latest"],
///     sources: [.init(reference: try ImageReference(parsing: "registry.local/app:1.0-linux-amd64"))]))
/// print(result.reference)  // registry.local/app@sha256:…
/// ```
public struct ManifestListAssembler: Sendable {
    public let registries: RegistryClientPool
    let logger: Logger
    /// Reports each step (resolving, copying, pushing) for a progress display.
    let progress: @Sendable (String) -> Void
    /// What sources pinned by digest resolved to before, shared by assemblers that plan the same children.
    public let resolvedSources: ResolvedSourceCache?

    public init(
        registries: RegistryClientPool, logger: Logger = Logger(label: "manifold.assembler"),
        resolvedSources: ResolvedSourceCache? = nil, progress: @escaping @Sendable (String) -> Void = { _ in }
    ) {
        self.registries = registries
        self.logger = logger
        self.resolvedSources = resolvedSources
        self.progress = progress
    }

    /// Resolves, verifies, copies and pushes; then reads the list back under every tag.
    public func assemble(_ request: AssemblyRequest) async throws -> AssemblyResult {
        try await publish(try await plan(request))
    }

    // MARK: - Planning

    /// Resolves every source and builds the list's bytes without changing anything in a registry.
    public func plan(_ request: AssemblyRequest) async throws -> AssemblyPlan {
        guard !request.sources.isEmpty else { throw AssemblyError.noSources }
        guard !request.allTags.isEmpty else { throw AssemblyError.noTags(target: request.target.name) }
        for tag in request.allTags { try ImageReference.validateTag(tag) }

        let (resolved, indexes) = try await withThrowingTaskGroup(of: (Int, [AssembledChild], RawManifest?).self) { group in
            for (index, source) in request.sources.enumerated() {
                if let known = resolvedSources?.children(of: source) {
                    group.addTask { (index, known, nil) }
                    continue
                }
                group.addTask {
                    let (children, read) = try await resolve(source)
                    resolvedSources?.remember(children, for: source)
                    return (index, children, read)
                }
            }
            var results = [[AssembledChild]](repeating: [], count: request.sources.count)
            var indexes = [RawManifest?](repeating: nil, count: request.sources.count)
            for try await (index, children, read) in group { (results[index], indexes[index]) = (children, read) }
            return (results, indexes.compactMap { $0 })
        }
        // The same index given twice (or two indexes sharing an attestation) lists each attestation once.
        var attestationDigests = Set<Digest>()
        let attestations = resolved.flatMap { $0.filter { $0.role == .attestation } }.filter {
            attestationDigests.insert($0.descriptor.digest).inserted
        }

        // One image per platform; Windows images of different OS builds may coexist.
        var images: [AssembledChild] = []
        var seen: [String: AssembledChild] = [:]
        var warnings: [String] = []
        for child in resolved.flatMap({ $0.filter { $0.role == .image } }) {
            guard let platform = child.descriptor.platform else { continue }
            let key = platform.normalized().key + "|" + (platform.osVersion ?? "")
            if let first = seen[key] {
                guard first.descriptor.digest == child.descriptor.digest else {
                    throw AssemblyError.duplicatePlatform(
                        platform: platform, first: first.requested.description, second: child.requested.description)
                }
                warnings.append("\(child.requested) is the same image as \(first.requested); it is listed once")
                continue
            }
            seen[key] = child
            images.append(child)
        }
        let children = images + attestations
        let list = try encodeList(request: request, images: images, attestations: attestations)
        return AssemblyPlan(request: request, children: children, list: list, warnings: warnings, indexes: indexes)
    }

    /// Resolves one source into its image entries (one, or several when it is an index) and attestations, and the
    /// index itself when the source is one.
    func resolve(_ source: AssemblySource) async throws -> (children: [AssembledChild], index: RawManifest?) {
        let reference = source.reference
        let registry = try registries.client(for: reference.registry)
        progress("resolving \(reference)")
        let manifest = try await registry.fetchManifest(repository: reference.repository, reference: reference.tagOrDigest)
        switch try manifest.decoded() {
        case .image(let image):
            try Self.checkImageType(manifest.mediaType, source: reference)
            let platform = try await platformOf(image: image, in: reference, registry: registry)
            let checked = try Self.check(platform: platform, expected: source.expectedPlatform, source: reference.description)
            var descriptor = manifest.descriptor
            descriptor.platform = checked
            let child = AssembledChild(
                descriptor: descriptor, role: .image, source: reference.withDigest(manifest.digest), requested: reference,
                manifest: manifest,
                blobs: [image.config] + image.layers)
            return ([child], nil)
        case .index(let index):
            return (try await flatten(index: index, source: source, registry: registry), manifest)
        }
    }

    private func flatten(index: ImageIndex, source: AssemblySource, registry: RegistryClient) async throws -> [AssembledChild] {
        let reference = source.reference
        let limit = registries.configuration.limits.maxIndexEntries
        guard index.manifests.count <= limit else {
            throw RegistryError.tooManyIndexEntries(reference: reference.description, count: index.manifests.count, limit: limit)
        }
        if let nested = index.manifests.first(where: { MediaType.isIndex($0.mediaType) }) {
            throw AssemblyError.nestedIndex(source: reference.description, child: nested.digest)
        }
        // Entries that are indexes themselves are refused above, before anything is read. The others are read side by
        // side (each its manifest, then an image's config), so an index costs two round trips rather than two per
        // entry. The answers are taken in the index's order and the first entry that fails in that order is the error:
        // once every entry before a failed one has answered, nothing more is started and what is under way is cancelled.
        let read = await withTaskGroup(of: (Int, Result<IndexEntry, any Error>).self) { group in
            var results = [Result<IndexEntry, any Error>?](repeating: nil, count: index.manifests.count)
            var firstFailure = Int.max
            func record(_ position: Int, _ result: Result<IndexEntry, any Error>) {
                results[position] = result
                if case .failure = result { firstFailure = min(firstFailure, position) }
            }
            for (position, entry) in index.manifests.enumerated() {
                if position >= Self.entriesReadAtOnce, let (done, result) = await group.next() { record(done, result) }
                if position > firstFailure || Task.isCancelled { break }
                group.addTask {
                    do {
                        return (position, .success(try await readEntry(entry, of: reference, registry: registry)))
                    } catch {
                        return (position, .failure(error))
                    }
                }
            }
            while firstFailure == .max || results[..<firstFailure].contains(where: { $0 == nil }),
                let (done, result) = await group.next()
            {
                record(done, result)
            }
            group.cancelAll()
            return results.map { $0 ?? .failure(CancellationError()) }
        }
        var images: [AssembledChild] = []
        var attestations: [(Descriptor, RawManifest, ImageManifest)] = []
        var available: [Platform] = []
        for (entry, result) in zip(index.manifests, read) {
            let childReference = reference.withDigest(entry.digest)
            let platform: Platform
            let manifest: RawManifest
            let image: ImageManifest
            switch try result.get() {
            case .attestation(let attestation, let body):
                attestations.append((entry, attestation, body))
                continue
            case .image(let read, let readManifest, let readImage):
                (platform, manifest, image) = (read, readManifest, readImage)
            }
            available.append(platform)
            if let expected = source.expectedPlatform {
                guard expected.normalized().key == platform.normalized().key else { continue }
                if let build = expected.osVersion.flatMap(Platform.windowsBuild), let actual = platform.osVersion,
                    Platform.windowsBuild(actual) != build
                {
                    continue
                }
            }
            let checked = try Self.check(
                platform: platform, expected: source.expectedPlatform, source: childReference.description)
            var descriptor = entry
            descriptor.platform = checked
            descriptor.mediaType = manifest.mediaType
            descriptor.size = Int64(manifest.bytes.count)
            images.append(
                AssembledChild(
                    descriptor: descriptor, role: .image, source: childReference, requested: reference, manifest: manifest,
                    blobs: [image.config] + image.layers))
        }
        if let expected = source.expectedPlatform, images.isEmpty {
            throw AssemblyError.platformNotInIndex(source: reference.description, expected: expected, available: available)
        }
        let kept = Set(images.map(\.descriptor.digest.description))
        let keptAttestations = attestations.filter { entry, _, _ in
            entry.annotations?[Annotation.dockerReferenceDigest].map { kept.contains($0) } ?? false
        }
        return images
            + keptAttestations.map { entry, manifest, image in
                AssembledChild(
                    descriptor: entry, role: .attestation, source: reference.withDigest(entry.digest), requested: reference,
                    manifest: manifest,
                    blobs: [image.config] + image.layers)
            }
    }

    /// How many entries of one index are read at a time.
    static let entriesReadAtOnce = 8

    /// One index entry as read: an attestation manifest, or an image with the platform its config declares.
    enum IndexEntry: Sendable {
        case attestation(RawManifest, ImageManifest)
        case image(Platform, RawManifest, ImageManifest)
    }

    /// Reads one entry of an index: its manifest and, for an image, its config's platform, reconciled with what the
    /// index says of it (the config wins where both speak; the index may add os.version and os.features).
    private func readEntry(_ entry: Descriptor, of index: ImageReference, registry: RegistryClient) async throws -> IndexEntry {
        let childReference = index.withDigest(entry.digest)
        let manifest = try await registry.fetchManifest(repository: index.repository, reference: entry.digest.description)
        guard case .image(let image) = try manifest.decoded() else {
            throw AssemblyError.nestedIndex(source: index.description, child: entry.digest)
        }
        if entry.annotations?[Annotation.dockerReferenceType] == Annotation.attestationManifestType {
            return .attestation(manifest, image)
        }
        try Self.checkImageType(manifest.mediaType, source: childReference)
        var platform = try await platformOf(image: image, in: childReference, registry: registry)
        if let listed = entry.platform {
            guard listed.normalized().key == platform.normalized().key else {
                throw AssemblyError.platformMismatch(source: childReference.description, expected: listed, actual: platform)
            }
            platform.osVersion = platform.osVersion ?? listed.osVersion
            platform.osFeatures = platform.osFeatures ?? listed.osFeatures
        }
        return .image(platform, manifest, image)
    }

    private func platformOf(image: ImageManifest, in reference: ImageReference, registry: RegistryClient) async throws -> Platform
    {
        let bytes = try await registry.fetchBlob(repository: reference.repository, digest: image.config.digest)
        do {
            return try JSONDecoder().decode(ImageConfig.self, from: bytes).platform
        } catch {
            throw RegistryError.protocolViolation(
                url: "\(reference.name)@\(image.config.digest)",
                message: "the image config is not a valid image configuration (it needs os and architecture): \(error)")
        }
    }

    static func checkImageType(_ mediaType: String, source: ImageReference) throws {
        guard MediaType.isImageManifest(mediaType) else {
            throw AssemblyError.unsupportedManifest(source: source.description, mediaType: mediaType)
        }
    }

    /// Compares the platform an image's config declares with the one the caller expects, and refuses
    /// Windows images that do not say which OS build they need.
    static func check(platform: Platform, expected: Platform?, source: String) throws -> Platform {
        var platform = platform
        // Spell os and architecture the way clients compare them (x86_64 → amd64); a config that already
        // uses the canonical names keeps its variant as written (arm64 images often say v8).
        let canonical = platform.normalized()
        if canonical.os != platform.os || canonical.architecture != platform.architecture {
            platform.os = canonical.os
            platform.architecture = canonical.architecture
            platform.variant = canonical.variant
        }
        if let expected {
            guard expected.normalized().key == platform.normalized().key else {
                throw AssemblyError.platformMismatch(source: source, expected: expected, actual: platform)
            }
            if let wanted = expected.osVersion {
                if let actual = platform.osVersion {
                    guard Platform.windowsBuild(actual) == Platform.windowsBuild(wanted) else {
                        throw AssemblyError.platformMismatch(source: source, expected: expected, actual: platform)
                    }
                } else {
                    // Like `docker manifest annotate --os-version`: the caller vouches for the OS build.
                    platform.osVersion = wanted
                }
            }
            if platform.osFeatures == nil { platform.osFeatures = expected.osFeatures }
        }
        if platform.os.lowercased() == "windows", (platform.osVersion ?? "").isEmpty {
            throw AssemblyError.windowsWithoutOSVersion(source: source)
        }
        return platform
    }

    // MARK: - Encoding

    func encodeList(request: AssemblyRequest, images: [AssembledChild], attestations: [AssembledChild]) throws -> RawManifest {
        let allDocker = images.allSatisfy { $0.manifest.mediaType == MediaType.dockerManifest }
        let needsOCI = !attestations.isEmpty || !request.annotations.isEmpty
        let useDocker: Bool
        switch request.format {
        case .automatic:
            useDocker = allDocker && !needsOCI
        case .oci:
            useDocker = false
        case .docker:
            guard allDocker else {
                throw AssemblyError.formatConflict(format: .docker, reason: "some children are OCI manifests; use --format oci")
            }
            guard !needsOCI else {
                throw AssemblyError.formatConflict(
                    format: .docker, reason: "Docker manifest lists cannot carry annotations or attestation manifests")
            }
            useDocker = true
        }
        let entries = (images + attestations).map { child -> Descriptor in
            var descriptor = child.descriptor
            if useDocker {
                descriptor.annotations = nil
                descriptor.artifactType = nil
                descriptor.urls = nil
            }
            return descriptor
        }
        let mediaType = useDocker ? MediaType.dockerManifestList : MediaType.ociImageIndex
        let index = ImageIndex(
            schemaVersion: 2, mediaType: mediaType, manifests: entries,
            annotations: useDocker || request.annotations.isEmpty ? nil : request.annotations)
        return try RawManifest(bytes: try CanonicalJSON.encode(index), mediaType: mediaType)
    }
}
