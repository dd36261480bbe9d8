import Foundation
import ManifoldCore
import ManifoldHTTP
import ManifoldTestSupport
import Synchronization
import Testing

@testable import ManifoldRegistry

/// What a user reads when a registry refuses, and how refusals and hints are honoured, against the real registry.
@Suite struct RegistryErrorTests {
    @Test func aReadOnlyAccountPushingIsDeniedPushAccessToTheRepository() async throws {
        let fixture = try RegistryFixture(.token)
        let registry = fixture.registry
        let reader = try RegistryFixture(
            reusing: registry,
            credentials: .basic(username: registry.readOnlyUsername!, password: registry.readOnlyPassword!))
        let image = try TestImage.make(os: "linux", architecture: "amd64", format: .docker, layerText: "ro")
        await #expect { try await reader.push(image, to: "team/ro", tag: "x") } throws: { error in
            guard case RegistryError.denied(let host, _, _, let hadCredentials, _) = error else { return false }
            let text = "\(error)"
            return host == fixture.host && hadCredentials && text.contains("push access to repository team/ro")
                && text.contains("lacks it") && !text.contains("rejected the credentials")
        }
    }

    @Test func missingThingsKeepTheRegistrysCode() async throws {
        let fixture = try RegistryFixture(.http)
        let client = try fixture.client()
        try await fixture.push(
            try TestImage.make(os: "linux", architecture: "amd64", format: .oci, layerText: "nf"), to: "here", tag: "t")
        await #expect { try await client.fetchManifest(repository: "here", reference: "nope") } throws: { error in
            guard case RegistryError.notFound = error else { return false }
            return (error as? RegistryError)?.registryCodes == ["MANIFEST_UNKNOWN"] && "\(error)".contains("MANIFEST_UNKNOWN")
        }
        await #expect { try await client.fetchManifest(repository: "nowhere", reference: "t") } throws: { error in
            // distribution 2.8 answers MANIFEST_UNKNOWN for a repository that does not exist; others say NAME_UNKNOWN.
            guard case RegistryError.notFound = error, let code = (error as? RegistryError)?.registryCodes.first else {
                return false
            }
            return ["MANIFEST_UNKNOWN", "NAME_UNKNOWN"].contains(code) && "\(error)".contains("\(code)")
                && "\(error)".contains("\(fixture.host)/nowhere:t")
        }
        let ghost = Digest.compute(of: Data("ghost blob".utf8))
        await #expect { try await client.fetchBlob(repository: "here", digest: ghost) } throws: { error in
            guard case RegistryError.notFound = error else { return false }
            return "\(error)".contains("BLOB_UNKNOWN")
        }
    }

    @Test func uploadURLsAreShownWithoutTheirQueryString() async throws {
        let fixture = try RegistryFixture(.http)
        let proxy = try fixture.registry.withFaultProxy()
        defer { proxy.stop() }
        let pool = fixture.pool(through: proxy)
        defer { pool.shutdown() }
        try proxy.setRules([FaultRule(method: "PUT", pathRegex: "/blobs/uploads/", status: 400, times: FaultRule.forever)])
        let data = Data("secret state".utf8)
        await #expect {
            try await pool.client(for: proxy.host).uploadBlob(repository: "up", digest: Digest.compute(of: data), data: data)
        } throws: { error in
            let text = "\(error)"
            return text.contains("/v2/up/blobs/uploads/") && !text.contains("_state=") && !text.contains("digest=")
        }
        let transport = HTTPClientError.timedOut(url: "https://r:5000/v2/a/blobs/uploads/u?_state=SIGNED&digest=sha256:1")
        #expect(!"\(RegistryError.transport(transport, attempts: 2))".contains("_state="))
        #expect(URLRedaction.display("https://r/v2/a/blobs/uploads/u?_state=x#f") == "https://r/v2/a/blobs/uploads/u")
    }

    @Test func theUploadLocationQueryIsKeptByteForByte() throws {
        let fixture = try RegistryFixture(.http)
        let client = try fixture.client()
        let opaque = "_state=a%2Fb+c%3D%3D&x=1"
        var request = RegistryClient.RegistryRequest(
            method: "PUT", url: URL(string: "http://\(fixture.host)/v2/r/blobs/uploads/u?\(opaque)")!)
        request.query = [URLQueryItem(name: "digest", value: "sha256:abc")]
        let url = try client.url(for: request)
        #expect(URLComponents(url: url, resolvingAgainstBaseURL: false)?.percentEncodedQuery == opaque + "&digest=sha256:abc")
    }

    @Test func retryAfterIsWaitedForBeforeTheNextAttempt() async throws {
        let fixture = try RegistryFixture(.http)
        try await fixture.push(
            try TestImage.make(os: "linux", architecture: "amd64", format: .oci, layerText: "ra"), to: "ra", tag: "t")
        let proxy = try fixture.registry.withFaultProxy()
        defer { proxy.stop() }
        let delays = Mutex<[Duration]>([])
        var configuration = RegistryFixture.configuration(
            for: fixture.registry, retry: RetryPolicy(maxAttempts: 3, sleep: { delay in delays.withLock { $0.append(delay) } }))
        configuration.plainHTTPHosts = [proxy.host]
        let pool = RegistryClientPool(configuration: configuration)
        defer { pool.shutdown() }
        let client = try pool.client(for: proxy.host)

        try proxy.setRules([FaultRule(method: "GET", pathRegex: "/manifests/", status: 429, times: 1, retryAfter: "3")])
        let manifest = try await client.fetchManifest(repository: "ra", reference: "t")
        #expect(manifest.bytes.isEmpty == false)
        #expect(delays.withLock { $0 } == [.seconds(3)])

        // An upload whose final PUT is refused starts again in a new session, after the registry's Retry-After.
        delays.withLock { $0 = [] }
        try proxy.setRules([FaultRule(method: "PUT", pathRegex: "/blobs/uploads/", status: 503, times: 1, retryAfter: "4")])
        let data = Data("retry after upload".utf8)
        let digest = Digest.compute(of: data)
        try await client.uploadBlob(repository: "ra", digest: digest, data: data)
        #expect(delays.withLock { $0 } == [.seconds(4)])
        #expect(try await client.blobSize(repository: "ra", digest: digest) == Int64(data.count))
        #expect(proxy.requestLog().filter { $0.method == "POST" }.count >= 2)
    }

    @Test func aMountTheSourceCannotServeOpensAnUploadThatCompletes() async throws {
        let fixture = try RegistryFixture(.basic)
        let client = try fixture.client()
        let data = Data("mounted from nowhere".utf8)
        let digest = Digest.compute(of: data)
        let result = try await client.mountBlob(repository: "dst/app", digest: digest, from: "does/not/have/it")
        guard case .uploadStarted(let session) = result else {
            Issue.record("the registry mounted a blob nobody has: \(result)")
            return
        }
        try await client.uploadBlob(repository: "dst/app", digest: digest, data: data, session: session)
        #expect(try await client.fetchBlob(repository: "dst/app", digest: digest) == data)
    }

    @Test func aBrokenCredentialStoreOnlyMattersWhenARegistryAsksForCredentials() async throws {
        let scratch = try ScratchDirectory(prefix: "broken-creds-store")
        defer { scratch.remove() }
        let file = scratch.file("config.json")
        try Data(#"{"credsStore": "manifold-no-such-helper"}"#.utf8).write(to: file)
        let broken = DockerConfig(file: file, helperSearchPath: [scratch.path])

        let open = try RegistryFixture(.http)
        var configuration = RegistryFixture.configuration(for: open.registry)
        configuration.credentials = broken
        let pool = RegistryClientPool(configuration: configuration)
        defer { pool.shutdown() }
        try await pool.client(for: open.host).ping()
        let image = try TestImage.make(os: "linux", architecture: "amd64", format: .docker, layerText: "anonymous")
        let client = try pool.client(for: open.host)
        for blob in [image.config] + image.layers {
            try await client.uploadBlob(repository: "anon", digest: try Digest(parsing: blob.digest), data: blob.bytes)
        }
        try await client.pushManifest(
            repository: "anon", reference: "t",
            manifest: try RawManifest(bytes: image.manifest, mediaType: image.manifestMediaType))

        let guarded = try RegistryFixture(.basic)
        var guardedConfiguration = RegistryFixture.configuration(for: guarded.registry)
        guardedConfiguration.credentials = broken
        let guardedPool = RegistryClientPool(configuration: guardedConfiguration)
        defer { guardedPool.shutdown() }
        await #expect { try await guardedPool.client(for: guarded.host).ping() } throws: { error in
            "\(error)".contains("docker-credential-manifold-no-such-helper")
        }
    }
}
