/// Media types of the OCI image-spec and the Docker image manifest v2 schema 2 that Manifold reads and writes.
public enum MediaType {
    /// An OCI image manifest.
    public static let ociImageManifest = "application/vnd.oci.image.manifest.v1+json"
    /// An OCI image index (multi-platform).
    public static let ociImageIndex = "application/vnd.oci.image.index.v1+json"
    /// An OCI image config.
    public static let ociImageConfig = "application/vnd.oci.image.config.v1+json"
    /// A gzip-compressed OCI layer.
    public static let ociLayerTarGzip = "application/vnd.oci.image.layer.v1.tar+gzip"
    /// An uncompressed OCI layer.
    public static let ociLayerTar = "application/vnd.oci.image.layer.v1.tar"
    /// A zstd-compressed OCI layer.
    public static let ociLayerTarZstd = "application/vnd.oci.image.layer.v1.tar+zstd"
    /// The OCI empty descriptor (`{}`), used as the config of artifacts.
    public static let ociEmpty = "application/vnd.oci.empty.v1+json"
    /// A Docker image manifest (schema 2).
    public static let dockerManifest = "application/vnd.docker.distribution.manifest.v2+json"
    /// A Docker manifest list (multi-platform).
    public static let dockerManifestList = "application/vnd.docker.distribution.manifest.list.v2+json"
    /// A Docker image config.
    public static let dockerImageConfig = "application/vnd.docker.container.image.v1+json"
    /// A gzip-compressed Docker layer.
    public static let dockerLayerTarGzip = "application/vnd.docker.image.rootfs.diff.tar.gzip"
    /// A Docker layer that must be fetched from its `urls` (Windows base layers).
    public static let dockerForeignLayerTarGzip = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"
    /// The legacy signed Docker schema 1 manifest, which Manifold does not decode.
    public static let dockerManifestV1Signed = "application/vnd.docker.distribution.manifest.v1+prettyjws"

    /// Multi-platform manifest types: OCI index, Docker manifest list.
    public static let indexTypes = [ociImageIndex, dockerManifestList]
    /// Single-image manifest types: OCI manifest, Docker manifest.
    public static let imageManifestTypes = [ociImageManifest, dockerManifest]
    /// Every manifest type Manifold understands, in preference order: the `Accept` list for manifest requests.
    public static let allManifestTypes = indexTypes + imageManifestTypes

    /// Whether `mediaType` (parameters such as `; charset=utf-8` ignored) is an index or manifest list.
    public static func isIndex(_ mediaType: String) -> Bool {
        indexTypes.contains(essence(of: mediaType))
    }

    /// Whether `mediaType` (parameters ignored) is a single-image manifest.
    public static func isImageManifest(_ mediaType: String) -> Bool {
        imageManifestTypes.contains(essence(of: mediaType))
    }

    /// The `type/subtype` of a media type, lowercased, without parameters or surrounding whitespace.
    public static func essence(of mediaType: String) -> String {
        let type = mediaType.split(separator: ";", maxSplits: 1, omittingEmptySubsequences: false).first ?? ""
        return type.trimmingCharacters(in: .whitespaces).lowercased()
    }
}
