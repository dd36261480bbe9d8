/// Well-known annotation keys: the OCI pre-defined keys and the ones buildx uses to attach attestations.
public enum Annotation {
    /// Date and time the image was built (RFC 3339).
    public static let created = "org.opencontainers.image.created"
    /// URL of the source code the image was built from.
    public static let source = "org.opencontainers.image.source"
    /// Source control revision the image was built from.
    public static let revision = "org.opencontainers.image.revision"
    /// Human-readable title of the image.
    public static let title = "org.opencontainers.image.title"
    /// Human-readable description of the image.
    public static let description = "org.opencontainers.image.description"
    /// Version of the packaged software.
    public static let version = "org.opencontainers.image.version"
    /// Name of a reference for a target (a tag, in an OCI layout).
    public static let refName = "org.opencontainers.image.ref.name"
    /// Reference of the image the image was built on.
    public static let baseName = "org.opencontainers.image.base.name"
    /// Digest of the image the image was built on.
    public static let baseDigest = "org.opencontainers.image.base.digest"
    /// On an index entry, what the entry is; buildx uses `attestation-manifest` for provenance/SBOM manifests.
    public static let dockerReferenceType = "vnd.docker.reference.type"
    /// On an attestation entry, the digest of the image manifest the attestation describes.
    public static let dockerReferenceDigest = "vnd.docker.reference.digest"

    /// The ``dockerReferenceType`` value buildx gives attestation manifests.
    public static let attestationManifestType = "attestation-manifest"
}
