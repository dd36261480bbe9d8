import Foundation

/// A reference to content by media type, digest and size: a manifest's config and layers, an index's entries.
///
/// Optional fields that are nil are left out of the JSON entirely.
public struct Descriptor: Hashable, Sendable, Codable {
    /// The media type of the referenced content.
    public var mediaType: String
    /// The digest of the referenced content.
    public var digest: Digest
    /// The size of the referenced content in bytes.
    public var size: Int64
    /// Alternative locations of the content (Docker foreign layers).
    public var urls: [String]?
    /// Arbitrary metadata, e.g. ``Annotation/dockerReferenceType`` on attestation entries.
    public var annotations: [String: String]?
    /// The content itself, base64-encoded, for small blobs embedded in the descriptor (OCI).
    public var data: String?
    /// The platform an index entry runs on.
    public var platform: Platform?
    /// The artifact type of the referenced manifest, when it is an artifact.
    public var artifactType: String?

    /// Creates a descriptor.
    public init(
        mediaType: String, digest: Digest, size: Int64, urls: [String]? = nil, annotations: [String: String]? = nil,
        platform: Platform? = nil, artifactType: String? = nil, data: String? = nil
    ) {
        self.mediaType = mediaType
        self.digest = digest
        self.size = size
        self.urls = urls
        self.annotations = annotations
        self.data = data
        self.platform = platform
        self.artifactType = artifactType
    }
}
