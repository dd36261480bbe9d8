import Foundation

/// A single-platform image manifest (OCI image manifest or Docker manifest v2 schema 2).
public struct ImageManifest: Hashable, Sendable, Codable {
    /// Always 2.
    public var schemaVersion: Int
    /// The manifest's own media type; optional in OCI, always present in Docker manifests.
    public var mediaType: String?
    /// The artifact type, when the manifest describes an artifact rather than an image.
    public var artifactType: String?
    /// The image config blob.
    public var config: Descriptor
    /// The layers, base first.
    public var layers: [Descriptor]
    /// The manifest this one refers to (OCI referrers).
    public var subject: Descriptor?
    /// Arbitrary metadata.
    public var annotations: [String: String]?

    /// Creates a manifest; nil fields are omitted from the JSON.
    public init(
        schemaVersion: Int = 2, mediaType: String? = MediaType.ociImageManifest, artifactType: String? = nil,
        config: Descriptor, layers: [Descriptor], subject: Descriptor? = nil, annotations: [String: String]? = nil
    ) {
        self.schemaVersion = schemaVersion
        self.mediaType = mediaType
        self.artifactType = artifactType
        self.config = config
        self.layers = layers
        self.subject = subject
        self.annotations = annotations
    }
}

/// A multi-platform image index (OCI image index or Docker manifest list).
public struct ImageIndex: Hashable, Sendable, Codable {
    /// Always 2.
    public var schemaVersion: Int
    /// The index's own media type; optional in OCI, always present in Docker manifest lists.
    public var mediaType: String?
    /// The artifact type, when the index describes an artifact.
    public var artifactType: String?
    /// The entries: one per platform image, plus any attestation manifests.
    public var manifests: [Descriptor]
    /// The manifest this one refers to (OCI referrers).
    public var subject: Descriptor?
    /// Arbitrary metadata.
    public var annotations: [String: String]?

    /// Creates an index; nil fields are omitted from the JSON.
    public init(
        schemaVersion: Int = 2, mediaType: String? = MediaType.ociImageIndex, artifactType: String? = nil,
        manifests: [Descriptor], subject: Descriptor? = nil, annotations: [String: String]? = nil
    ) {
        self.schemaVersion = schemaVersion
        self.mediaType = mediaType
        self.artifactType = artifactType
        self.manifests = manifests
        self.subject = subject
        self.annotations = annotations
    }
}

/// The platform fields of an image config blob; everything else in the config is ignored when decoding.
public struct ImageConfig: Hashable, Sendable, Codable {
    /// The CPU architecture the image's binaries are built for.
    public var architecture: String
    /// The operating system the image runs on.
    public var os: String
    /// The CPU variant.
    public var variant: String?
    /// The OS version (Windows); JSON key `os.version`.
    public var osVersion: String?
    /// Required OS features; JSON key `os.features`.
    public var osFeatures: [String]?
    /// When the image was created (RFC 3339).
    public var created: String?

    private enum CodingKeys: String, CodingKey {
        case architecture, os, variant, created
        case osVersion = "os.version"
        case osFeatures = "os.features"
    }

    /// Creates a config summary.
    public init(
        architecture: String, os: String, variant: String? = nil, osVersion: String? = nil, osFeatures: [String]? = nil,
        created: String? = nil
    ) {
        self.architecture = architecture
        self.os = os
        self.variant = variant
        self.osVersion = osVersion
        self.osFeatures = osFeatures
        self.created = created
    }

    /// The platform the config declares, as written (not normalised).
    public var platform: Platform {
        Platform(os: os, architecture: architecture, variant: variant, osVersion: osVersion, osFeatures: osFeatures)
    }
}

/// A manifest exactly as a registry stored it: the bytes are the source of truth and are never re-encoded.
public struct RawManifest: Sendable, Hashable {
    /// The manifest bytes, as received or as they will be pushed.
    public let bytes: Data
    /// The media type, from the `Content-Type` header or the document's own `mediaType` field.
    public let mediaType: String
    /// The digest of ``bytes``.
    public let digest: Digest

    /// The decoded document.
    public enum Content: Sendable, Hashable {
        /// A single-platform image manifest.
        case image(ImageManifest)
        /// A multi-platform index or manifest list.
        case index(ImageIndex)
    }

    /// Media types registries send when they do not know better; the document's own field is used instead.
    static let genericMediaTypes: Set<String> = ["", "application/json", "text/plain", "application/octet-stream"]

    /// Wraps manifest bytes and digests them with `algorithm`.
    ///
    /// When `mediaType` is nil or generic (`application/json`, `text/plain`), the document's `mediaType` field
    /// decides; failing that, a `manifests` array means an OCI index and a `config` object an OCI manifest.
    public init(bytes: Data, mediaType: String?, algorithm: Digest.Algorithm = .sha256) throws(ManifestError) {
        let object: [String: Any]
        do {
            guard let parsed = try JSONSerialization.jsonObject(with: bytes) as? [String: Any] else {
                throw ManifestError(
                    reason: "the manifest (\(bytes.count) bytes) is JSON but not an object; expected {\"schemaVersion\": 2, …}")
            }
            object = parsed
        } catch let error as ManifestError {
            throw error
        } catch {
            throw ManifestError(
                reason: "the manifest (\(bytes.count) bytes, starting \(Self.preview(bytes))) is not valid JSON: "
                    + error.localizedDescription)
        }

        let header = mediaType.map(MediaType.essence(of:)) ?? ""
        let resolved: String
        if !Self.genericMediaTypes.contains(header) {
            resolved = header
        } else if let field = object["mediaType"] as? String, !field.isEmpty {
            resolved = field
        } else if object["manifests"] is [Any] {
            resolved = MediaType.ociImageIndex
        } else if object["config"] is [String: Any] {
            resolved = MediaType.ociImageManifest
        } else {
            throw ManifestError(
                reason:
                    "cannot tell what kind of manifest this is: the media type is \(mediaType.map { "\"\($0)\"" } ?? "missing"), "
                    + "the document has no \"mediaType\" field and neither a \"manifests\" array nor a \"config\" object; "
                    + "expected one of \(MediaType.allManifestTypes.joined(separator: ", "))")
        }
        self.bytes = bytes
        self.mediaType = resolved
        self.digest = Digest.compute(algorithm, of: bytes)
    }

    /// Checks that ``bytes`` hash to `expected`, using `expected`'s algorithm.
    public func verify(expected: Digest) throws(ManifestError) {
        let actual = expected.algorithm == digest.algorithm ? digest : Digest.compute(expected.algorithm, of: bytes)
        if actual != expected {
            throw ManifestError(
                reason: "digest mismatch: expected \(expected) but the \(bytes.count) manifest bytes hash to \(actual); "
                    + "the registry returned different content than the digest names")
        }
    }

    /// Decodes the bytes as an image manifest or an index, according to ``mediaType``.
    public func decoded() throws(ManifestError) -> Content {
        do {
            if MediaType.isIndex(mediaType) {
                return .index(try JSONDecoder().decode(ImageIndex.self, from: bytes))
            }
            if MediaType.isImageManifest(mediaType) {
                return .image(try JSONDecoder().decode(ImageManifest.self, from: bytes))
            }
        } catch {
            throw ManifestError(reason: "the \(mediaType) document \(digest) does not decode: \(Self.describe(error))")
        }
        throw ManifestError(
            reason: "unsupported manifest media type \"\(mediaType)\" (\(digest)); "
                + "expected one of \(MediaType.allManifestTypes.joined(separator: ", "))")
    }

    private static func preview(_ bytes: Data) -> String {
        let text = String(decoding: bytes.prefix(40), as: UTF8.self)
        return "\"\(text)\(bytes.count > 40 ? "…" : "")\""
    }

    private static func describe(_ error: any Error) -> String {
        guard let error = error as? DecodingError else { return "\(error)" }
        func path(_ context: DecodingError.Context) -> String {
            let keys = context.codingPath.map { $0.intValue.map { "[\($0)]" } ?? ".\($0.stringValue)" }.joined()
            return keys.isEmpty ? "the document" : "\"\(keys.hasPrefix(".") ? String(keys.dropFirst()) : keys)\""
        }
        switch error {
        case .keyNotFound(let key, let context):
            return "\(path(context)) is missing the required field \"\(key.stringValue)\""
        case .typeMismatch(let type, let context), .valueNotFound(let type, let context):
            return "\(path(context)) should be \(type): \(context.debugDescription)"
        case .dataCorrupted(let context):
            return "\(path(context)): \(context.debugDescription)"
        @unknown default:
            return "\(error)"
        }
    }
}

/// A manifest that cannot be used: not JSON, of an unknown kind, failing to decode, or not matching its digest.
public struct ManifestError: Error, CustomStringConvertible, Equatable {
    /// What is wrong, with the values involved.
    public let reason: String

    /// Creates an error.
    public init(reason: String) {
        self.reason = reason
    }

    /// `invalid manifest: <reason>`.
    public var description: String { "invalid manifest: \(reason)" }
}

/// The deterministic JSON encoding used for every document Manifold writes: sorted keys, unescaped slashes,
/// so the same value always produces the same bytes (and the same digest).
public enum CanonicalJSON {
    /// Encodes `value` with `JSONEncoder` using `[.sortedKeys, .withoutEscapingSlashes]`.
    public static func encode<T: Encodable>(_ value: T) throws -> Data {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return try encoder.encode(value)
    }
}
