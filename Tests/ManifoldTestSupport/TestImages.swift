import Foundation
import ManifoldCore

/// Content-addressed bytes: a config, a layer or a manifest.
public struct TestBlob: Sendable, Equatable {
    public let bytes: Data
    /// `sha256:` followed by 64 lowercase hex digits.
    public let digest: String
    public let mediaType: String
    public var size: Int { bytes.count }

    public init(bytes: Data, digest: String, mediaType: String) {
        self.bytes = bytes
        self.digest = digest
        self.mediaType = mediaType
    }

    /// A blob of `bytes`, its digest computed with `sha256sum`.
    public init(bytes: Data, mediaType: String) throws {
        self.init(bytes: bytes, digest: try TestDigest.sha256(bytes), mediaType: mediaType)
    }
}

/// A real, valid single-platform image built in memory: a gzip'd tar layer, an image config
/// whose `rootfs.diff_ids` match that layer, and a Docker v2 schema 2 or OCI image manifest.
///
/// ```swift
/// let image = try TestImage.make(os: "linux", architecture: "arm64", variant: "v8", format: .oci, layerText: "hi")
/// // upload image.config and image.layers, then PUT image.manifest as image.manifestMediaType
/// ```
public struct TestImage: Sendable {
    public enum Format: Sendable, CaseIterable {
        /// `application/vnd.docker.distribution.manifest.v2+json` with Docker config and layer types.
        case docker
        /// `application/vnd.oci.image.manifest.v1+json` with OCI config and layer types.
        case oci
    }

    public static let dockerManifestMediaType = "application/vnd.docker.distribution.manifest.v2+json"
    public static let dockerConfigMediaType = "application/vnd.docker.container.image.v1+json"
    public static let dockerLayerMediaType = "application/vnd.docker.image.rootfs.diff.tar.gzip"
    public static let ociManifestMediaType = "application/vnd.oci.image.manifest.v1+json"
    public static let ociConfigMediaType = "application/vnd.oci.image.config.v1+json"
    public static let ociLayerMediaType = "application/vnd.oci.image.layer.v1.tar+gzip"

    public let config: TestBlob
    public let layers: [TestBlob]
    public let manifest: Data
    public let manifestDigest: String
    public let manifestMediaType: String
    public let format: Format
    public let os: String
    public let architecture: String
    public let variant: String?
    public let osVersion: String?
    public let osFeatures: [String]?

    /// The manifest as a blob (bytes, digest, media type), e.g. to describe it in an index.
    public var manifestBlob: TestBlob {
        TestBlob(bytes: manifest, digest: manifestDigest, mediaType: manifestMediaType)
    }

    /// Builds an image whose one layer holds `hello.txt` containing `layerText`. Different texts
    /// give different layers, configs and manifests; the same arguments give the same bytes.
    ///
    /// `paddingBytes` adds `padding.bin` with that many incompressible bytes (derived from
    /// `layerText`), for tests that need a layer larger than an upload chunk.
    public static func make(
        os: String, architecture: String, variant: String? = nil, osVersion: String? = nil,
        osFeatures: [String]? = nil, format: Format, layerText: String, paddingBytes: Int = 0
    ) throws -> TestImage {
        var files = [TarFile(name: "hello.txt", contents: Data(layerText.utf8))]
        if paddingBytes > 0 {
            files.append(TarFile(name: "padding.bin", contents: pseudoRandomBytes(count: paddingBytes, seed: layerText)))
        }
        let tar = TarArchive.make(files)
        let diffID = try TestDigest.sha256(tar)
        let layer = try TestBlob(
            bytes: try Gzip.compress(tar), mediaType: format == .docker ? dockerLayerMediaType : ociLayerMediaType)

        let created = "2024-01-01T00:00:00Z"
        var imageConfig: [String: Any] = [
            "created": created,
            "os": os,
            "architecture": architecture,
            "config": os == "windows"
                ? ["Cmd": ["cmd", "/S", "/C", "type C:\\hello.txt"], "WorkingDir": "C:\\"]
                : [
                    "Cmd": ["cat", "/hello.txt"], "WorkingDir": "/",
                    "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
                ],
            "rootfs": ["type": "layers", "diff_ids": [diffID]],
            "history": [
                ["created": created, "created_by": "COPY hello.txt / # manifold test image"]
            ],
        ]
        if let variant { imageConfig["variant"] = variant }
        if let osVersion { imageConfig["os.version"] = osVersion }
        if let osFeatures { imageConfig["os.features"] = osFeatures }
        let config = try TestBlob(
            bytes: try canonicalJSON(imageConfig),
            mediaType: format == .docker ? dockerConfigMediaType : ociConfigMediaType)

        let manifestMediaType = format == .docker ? dockerManifestMediaType : ociManifestMediaType
        let manifestObject: [String: Any] = [
            "schemaVersion": 2,
            "mediaType": manifestMediaType,
            "config": descriptor(config),
            "layers": [descriptor(layer)],
        ]
        let manifest = try canonicalJSON(manifestObject)
        return TestImage(
            config: config, layers: [layer], manifest: manifest, manifestDigest: try TestDigest.sha256(manifest),
            manifestMediaType: manifestMediaType, format: format, os: os, architecture: architecture,
            variant: variant, osVersion: osVersion, osFeatures: osFeatures)
    }

    private static func descriptor(_ blob: TestBlob) -> [String: Any] {
        ["mediaType": blob.mediaType, "size": blob.size, "digest": blob.digest]
    }

    private static func canonicalJSON(_ object: [String: Any]) throws -> Data {
        try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .withoutEscapingSlashes])
    }

    /// Deterministic bytes that gzip cannot shrink (xorshift64* seeded from `seed`).
    private static func pseudoRandomBytes(count: Int, seed: String) -> Data {
        var state: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in seed.utf8 { state = (state ^ UInt64(byte)) &* 0x100_0000_01b3 }
        if state == 0 { state = 1 }
        var bytes = [UInt8](repeating: 0, count: count)
        for index in 0..<count {
            state ^= state >> 12
            state ^= state << 25
            state ^= state >> 27
            bytes[index] = UInt8(truncatingIfNeeded: (state &* 0x2545_f491_4f6c_dd1d) >> 56)
        }
        return Data(bytes)
    }
}

/// SHA-256 digests of test blobs, with the project's hashing (checked against OpenSSL and the NIST vectors in
/// `DigestTests`); the registry recomputes every digest it is sent, so a wrong one here would fail the push.
public enum TestDigest {
    /// `sha256:<hex>` of `data`.
    public static func sha256(_ data: Data) throws -> String {
        Digest.compute(of: data).description
    }
}

private struct TarFile {
    let name: String
    let contents: Data
}

/// A ustar archive: one 512-byte header per regular file, contents padded to 512 bytes, and two
/// zero blocks at the end. Owner root, mode 0644, a fixed mtime, so equal input gives equal bytes.
private enum TarArchive {
    static let mtime = 1_704_067_200  // 2024-01-01T00:00:00Z

    static func make(_ files: [TarFile]) -> Data {
        var archive = Data()
        for file in files {
            archive.append(header(name: file.name, size: file.contents.count))
            archive.append(file.contents)
            let remainder = file.contents.count % 512
            if remainder != 0 { archive.append(Data(count: 512 - remainder)) }
        }
        archive.append(Data(count: 1024))
        return archive
    }

    private static func header(name: String, size: Int) -> Data {
        var block = [UInt8](repeating: 0, count: 512)
        func put(_ text: String, at offset: Int, width: Int) {
            for (index, byte) in text.utf8.prefix(width).enumerated() { block[offset + index] = byte }
        }
        func octal(_ value: Int, width: Int) -> String {
            let digits = String(value, radix: 8)
            return String(repeating: "0", count: max(0, width - 1 - digits.count)) + digits
        }
        put(name, at: 0, width: 100)
        put(octal(0o644, width: 8), at: 100, width: 8)
        put(octal(0, width: 8), at: 108, width: 8)  // uid
        put(octal(0, width: 8), at: 116, width: 8)  // gid
        put(octal(size, width: 12), at: 124, width: 12)
        put(octal(mtime, width: 12), at: 136, width: 12)
        put("        ", at: 148, width: 8)  // checksum is computed with this field as spaces
        put("0", at: 156, width: 1)  // regular file
        put("ustar\u{0}00", at: 257, width: 8)
        put("root", at: 265, width: 32)
        put("root", at: 297, width: 32)
        let checksum = block.reduce(0) { $0 + Int($1) }
        put(octal(checksum, width: 7), at: 148, width: 6)
        block[154] = 0
        block[155] = 0x20
        return Data(block)
    }
}

/// `gzip -n` (no name, no timestamp) on a temporary file, so equal input gives equal bytes.
private enum Gzip {
    static func compress(_ data: Data) throws -> Data {
        let scratch = try ScratchDirectory(prefix: "manifold-layer")
        defer { scratch.remove() }
        let file = scratch.file("layer.tar")
        try data.write(to: file)
        try runChecked("gzip", ["-n", "-6", file.path])
        return try Data(contentsOf: scratch.file("layer.tar.gz"))
    }
}

/// Validation against the OCI image-spec JSON schemas kept in `../shared/oci-schema` (or
/// `MANIFOLD_OCI_SCHEMA_DIR`), with Python's `jsonschema`. Every `$ref` is answered from the local
/// files: the schemas' nested `id`s would otherwise send the resolver to opencontainers.org.
public enum OCISchema {
    /// Validates `document` against `schema` (e.g. `image-index-schema.json`).
    public static func validate(_ document: Data, schema: String) throws -> (valid: Bool, message: String) {
        let directory: URL
        if let override = ProcessInfo.processInfo.environment["MANIFOLD_OCI_SCHEMA_DIR"] {
            directory = URL(fileURLWithPath: override)
        } else {
            directory = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
                .deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("shared/oci-schema")
        }
        guard FileManager.default.fileExists(atPath: directory.appendingPathComponent(schema).path) else {
            throw TestEnvironmentError(
                "OCI schema \(schema) not found in \(directory.path); set MANIFOLD_OCI_SCHEMA_DIR")
        }
        let script = """
            import json, pathlib, sys
            import jsonschema
            base = pathlib.Path(sys.argv[1])
            store = {p.name: json.loads(p.read_text()) for p in base.glob('*.json')}
            def local(uri):
                name = uri.split('#')[0].rsplit('/', 1)[-1]
                if name not in store:
                    raise jsonschema.RefResolutionError('no local schema for ' + uri)
                return store[name]
            schema = store[sys.argv[2]]
            resolver = jsonschema.RefResolver(base_uri=base.as_uri() + '/', referrer=schema, store=store,
                                              handlers={'http': local, 'https': local})
            try:
                jsonschema.Draft4Validator(schema, resolver=resolver).validate(json.load(sys.stdin))
                print('valid')
            except jsonschema.ValidationError as error:
                print('invalid: ' + error.message)
            """
        let result = try runCommand("python3", ["-W", "ignore", "-c", script, directory.path, schema], input: document)
        guard result.status == 0 else { throw TestEnvironmentError("OCI schema validation could not run: \(result.stderr)") }
        let output = result.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        return (output == "valid", output)
    }
}
