import Foundation
import ManifoldCore
import ManifoldRegistry
import ManifoldTestSupport

/// A running test registry plus a client pool configured the way a user would configure Manifold for it.
final class RegistryFixture: Sendable {
    let registry: TestRegistry
    let pool: RegistryClientPool
    /// Whether this fixture started the registry (and so stops it).
    private let ownsRegistry: Bool

    init(_ mode: RegistryMode, credentials: RegistryCredential?? = .none, chunkSize: Int64 = 16 << 20) throws {
        registry = try TestRegistry.start(mode)
        pool = RegistryClientPool(
            configuration: Self.configuration(for: registry, credentials: credentials, chunkSize: chunkSize))
        ownsRegistry = true
    }

    /// Another client pool, with other credentials, for a registry another fixture runs.
    init(reusing registry: TestRegistry, credentials: RegistryCredential?) {
        self.registry = registry
        pool = RegistryClientPool(configuration: Self.configuration(for: registry, credentials: .some(credentials)))
        ownsRegistry = false
    }

    deinit {
        pool.shutdown()
        if ownsRegistry { registry.stop() }
    }

    /// Plain HTTP for the `http` mode, the test CA through `--registry-ca` for the TLS modes, and
    /// the registry's user unless `credentials` says otherwise (`.some(nil)` = anonymous).
    static func configuration(
        for registry: TestRegistry, credentials: RegistryCredential?? = .none, chunkSize: Int64 = 16 << 20,
        retry: RetryPolicy = RetryPolicy(maxAttempts: 3, baseDelay: .milliseconds(10), maxDelay: .milliseconds(50))
    ) -> RegistryConfiguration {
        var configuration = RegistryConfiguration(
            certsDirectories: [], credentials: StaticCredentials(), retry: retry, uploadChunkSize: chunkSize)
        switch registry.mode {
        case .http: configuration.plainHTTPHosts = [registry.host]
        default: configuration.caFiles = [registry.host: [registry.certificates!.caCertificate.path]]
        }
        let credential: RegistryCredential?
        switch credentials {
        case .none:
            credential = registry.username.map { .basic(username: $0, password: registry.password ?? "") }
        case .some(let explicit):
            credential = explicit
        }
        if let credential { configuration.credentials = StaticCredentials([registry.host: credential]) }
        return configuration
    }

    /// A client pool configured like ``pool`` that also reaches `proxy` (a fault proxy in front of this registry) over
    /// plain HTTP. The caller shuts it down.
    func pool(through proxy: FaultProxy) -> RegistryClientPool {
        var configuration = Self.configuration(for: registry)
        configuration.plainHTTPHosts = [proxy.host]
        return RegistryClientPool(configuration: configuration)
    }

    var host: String { registry.host }
    func client() throws -> RegistryClient { try pool.client(for: host) }

    func reference(_ repository: String, tag: String? = nil) throws -> ImageReference {
        try ImageReference(registry: host, repository: repository, tag: tag)
    }

    /// Pushes a test image's blobs and manifest and returns its reference by tag.
    @discardableResult
    func push(_ image: TestImage, to repository: String, tag: String) async throws -> ImageReference {
        let client = try client()
        for blob in [image.config] + image.layers {
            let digest = try Digest(parsing: blob.digest)
            if try await client.blobSize(repository: repository, digest: digest) == nil {
                try await client.uploadBlob(repository: repository, digest: digest, data: blob.bytes)
            }
        }
        let manifest = try RawManifest(bytes: image.manifest, mediaType: image.manifestMediaType)
        try await client.pushManifest(repository: repository, reference: tag, manifest: manifest)
        return try reference(repository, tag: tag)
    }

    /// The three platforms the product exists for, in one format.
    func pushPlatformImages(
        to repository: String, format: TestImage.Format, tagPrefix: String = "1.0"
    ) async throws
        -> [ImageReference]
    {
        let amd64 = try TestImage.make(os: "linux", architecture: "amd64", format: format, layerText: "amd64 \(tagPrefix)")
        let arm64 = try TestImage.make(
            os: "linux", architecture: "arm64", variant: "v8", format: format, layerText: "arm64 \(tagPrefix)")
        let windows = try TestImage.make(
            os: "windows", architecture: "amd64", osVersion: "10.0.20348.2227", format: format, layerText: "windows \(tagPrefix)")
        return [
            try await push(amd64, to: repository, tag: "\(tagPrefix)-linux-amd64"),
            try await push(arm64, to: repository, tag: "\(tagPrefix)-linux-arm64"),
            try await push(windows, to: repository, tag: "\(tagPrefix)-windows-amd64"),
        ]
    }

    /// `skopeo inspect --raw`: the bytes another tool reads back from the registry.
    func skopeoRaw(_ reference: String) throws -> Data {
        var arguments = ["inspect", "--raw"]
        switch registry.mode {
        case .http: arguments.append("--tls-verify=false")
        default:
            let certDirectory = registry.directory.appendingPathComponent("skopeo-certs")
            try? FileManager.default.createDirectory(at: certDirectory, withIntermediateDirectories: true)
            let ca = certDirectory.appendingPathComponent("ca.crt")
            if !FileManager.default.fileExists(atPath: ca.path) {
                try FileManager.default.copyItem(at: registry.certificates!.caCertificate, to: ca)
            }
            arguments.append("--cert-dir=\(certDirectory.path)")
        }
        if let username = registry.username { arguments.append("--creds=\(username):\(registry.password ?? "")") }
        arguments.append("docker://\(reference)")
        let result = try runCommand("skopeo", arguments)
        guard result.status == 0 else { throw TestEnvironmentError("skopeo \(arguments) failed: \(result.stderr)") }
        return Data(result.stdout.utf8)
    }
}
