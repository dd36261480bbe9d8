import Foundation
import ManifoldCore

/// One image to put in a manifest list: a reference by tag or digest, and optionally the platform
/// the caller expects it to be (checked against the image's config, never trusted blindly).
public struct AssemblySource: Sendable, Hashable {
    public var reference: ImageReference
    public var expectedPlatform: Platform?

    public init(reference: ImageReference, expectedPlatform: Platform? = nil) {
        self.reference = reference
        self.expectedPlatform = expectedPlatform
    }
}

/// Which kind of list to write.
public enum ListFormat: String, Sendable, CaseIterable {
    /// A Docker manifest list when every child is a Docker schema-2 image and nothing needs OCI
    /// features (annotations, attestations); an OCI image index otherwise.
    case automatic
    case oci
    case docker
}

/// What to publish: the list of `sources` under `tags` in `target`'s repository.
public struct AssemblyRequest: Sendable {
    /// Registry and repository of the list; a tag on it is published too.
    public var target: ImageReference
    public var tags: [String]
    public var sources: [AssemblySource]
    /// Index-level annotations (OCI output only).
    public var annotations: [String: String]
    public var format: ListFormat

    public init(
        target: ImageReference, tags: [String], sources: [AssemblySource], annotations: [String: String] = [:],
        format: ListFormat = .automatic
    ) {
        self.target = target
        self.tags = tags
        self.sources = sources
        self.annotations = annotations
        self.format = format
    }

    /// Every tag to publish: the target's own tag first, then `tags`, without repeats.
    public var allTags: [String] {
        var seen = Set<String>()
        return ([target.tag].compactMap { $0 } + tags).filter { seen.insert($0).inserted }
    }
}

/// A child of the list, resolved and verified.
public struct AssembledChild: Sendable, Hashable {
    public enum Role: String, Sendable { case image, attestation }
    /// The entry as it appears in the list.
    public var descriptor: Descriptor
    public var role: Role
    /// Where it was found, by digest.
    public var source: ImageReference
    /// The source as the caller named it (by tag, or the index it was flattened from).
    public var requested: ImageReference
    /// The manifest's own bytes.
    public var manifest: RawManifest
    /// Blobs the manifest references (config first), which must exist in the target repository.
    public var blobs: [Descriptor]
}

/// A list ready to push: its bytes are final and its digest known.
public struct AssemblyPlan: Sendable {
    public var request: AssemblyRequest
    public var children: [AssembledChild]
    public var list: RawManifest
    public var warnings: [String]
    /// The sources that were indexes, as read (each flattened into `children`); a source resolved from a
    /// ``ResolvedSourceCache`` is not read again and is not here.
    public var indexes: [RawManifest] = []
}

/// What was published.
public struct AssemblyResult: Sendable {
    public var plan: AssemblyPlan
    /// `registry/repository@digest` of the list.
    public var reference: ImageReference
    public var tags: [String]
    /// How many children had to be copied into the target repository.
    public var copiedChildren: Int
    public var digest: Digest { plan.list.digest }
}

/// Why a list was not assembled. Each case names the child and says what to do.
public enum AssemblyError: Error, CustomStringConvertible, Sendable {
    case noSources
    case noTags(target: String)
    case platformMismatch(source: String, expected: Platform, actual: Platform)
    case windowsWithoutOSVersion(source: String)
    case duplicatePlatform(platform: Platform, first: String, second: String)
    case platformNotInIndex(source: String, expected: Platform, available: [Platform])
    case nestedIndex(source: String, child: Digest)
    case unsupportedManifest(source: String, mediaType: String)
    case formatConflict(format: ListFormat, reason: String)
    case childMissing(child: String, target: String, registryMessage: String)
    case readBackMismatch(tag: String, expected: Digest, actual: Digest)

    public var description: String {
        switch self {
        case .noSources:
            return "no source images given: name at least one image to put in the list"
        case .noTags(let target):
            return "no tag given for \(target): pass --tag TAG (or put a tag on the target reference)"
        case .platformMismatch(let source, let expected, let actual):
            return "\(source) is a \(actual) image, not \(expected) as requested: its config says os=\(actual.os), "
                + "architecture=\(actual.architecture)\(actual.variant.map { ", variant=\($0)" } ?? "")"
                + "\(actual.osVersion.map { ", os.version=\($0)" } ?? ""). Fix the --platform value or the image."
        case .windowsWithoutOSVersion(let source):
            return "\(source) is a Windows image whose config has no os.version, so Windows hosts could not pick the "
                + "right image. Build it on the Windows version it targets, or give the version with "
                + "--platform \(source)=windows/amd64:10.0.BUILD."
        case .duplicatePlatform(let platform, let first, let second):
            return "\(first) and \(second) are both \(platform): a list can hold one image per platform. Remove one."
        case .platformNotInIndex(let source, let expected, let available):
            return "\(source) is a manifest list without a \(expected) image; it has "
                + available.map(\.description).joined(separator: ", ")
        case .nestedIndex(let source, let child):
            return "\(source) is an index that contains another index (\(child)); Manifold flattens one level only"
        case .unsupportedManifest(let source, let mediaType):
            return "\(source) has media type \(mediaType), which cannot go in a list; expected an OCI or Docker schema-2 "
                + "image manifest or index (schema-1 images must be rebuilt)"
        case .formatConflict(let format, let reason):
            return "cannot write a \(format.rawValue) list: \(reason)"
        case .childMissing(let child, let target, let message):
            return "the registry refused the list because child \(child) is missing from \(target) (\(message)). "
                + "Push that image to \(target) or let Manifold copy it by naming it as a source."
        case .readBackMismatch(let tag, let expected, let actual):
            return
                "after pushing, tag \(tag) points at \(actual) instead of \(expected): something else pushed to it concurrently"
        }
    }
}
