import Foundation

extension TestImage {
    /// Writes the image as an OCI image layout (`oci-layout`, `index.json`, `blobs/sha256/…`) so that
    /// other tools (skopeo, buildah) can push it: `skopeo copy oci:DIR:TAG docker://…`.
    public func writeOCILayout(to directory: URL, tag: String) throws {
        let blobs = directory.appendingPathComponent("blobs/sha256")
        try FileManager.default.createDirectory(at: blobs, withIntermediateDirectories: true)
        func write(_ bytes: Data, digest: String) throws {
            let hex = digest.split(separator: ":").last.map(String.init) ?? digest
            try bytes.write(to: blobs.appendingPathComponent(hex))
        }
        for blob in [config] + layers { try write(blob.bytes, digest: blob.digest) }
        try write(manifest, digest: manifestDigest)
        try Data(#"{"imageLayoutVersion":"1.0.0"}"#.utf8).write(to: directory.appendingPathComponent("oci-layout"))
        let index: [String: Any] = [
            "schemaVersion": 2,
            "manifests": [
                [
                    "mediaType": manifestMediaType, "digest": manifestDigest, "size": manifest.count,
                    "annotations": ["org.opencontainers.image.ref.name": tag],
                ] as [String: Any]
            ],
        ]
        try JSONSerialization.data(withJSONObject: index, options: [.sortedKeys]).write(
            to: directory.appendingPathComponent("index.json"))
    }
}
