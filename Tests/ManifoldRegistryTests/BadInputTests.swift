import Foundation
import ManifoldCore
import ManifoldTestSupport
import Testing

@testable import ManifoldRegistry

/// What users get wrong, and what a flaky registry does, against the real registry.
@Suite struct BadInputTests {
    @Test func missingChildIsNamedAndNothingIsPushed() async throws {
        let fixture = try RegistryFixture(.http)
        let sources = try await fixture.pushPlatformImages(to: "app", format: .docker)
        let missing = try fixture.reference("app", tag: "1.0-linux-s390x")
        let assembler = ManifestListAssembler(registries: fixture.pool)
        await #expect {
            try await assembler.assemble(
                AssemblyRequest(
                    target: try fixture.reference("app"), tags: ["1.0"],
                    sources: sources.map { .init(reference: $0) } + [.init(reference: missing)]))
        } throws: { error in
            let text = "\(error)"
            return text.contains("\(fixture.host)/app:1.0-linux-s390x") && text.contains("does not exist")
        }
        #expect(try await fixture.client().headManifest(repository: "app", reference: "1.0") == nil)
    }

    @Test func childWithTheWrongPlatformIsRefused() async throws {
        let fixture = try RegistryFixture(.http)
        let sources = try await fixture.pushPlatformImages(to: "app", format: .docker)
        let request = AssemblyRequest(
            target: try fixture.reference("app"), tags: ["1.0"],
            sources: [.init(reference: sources[0], expectedPlatform: try Platform(parsing: "linux/arm64"))])
        await #expect { try await ManifestListAssembler(registries: fixture.pool).assemble(request) } throws: { error in
            guard case AssemblyError.platformMismatch(let source, _, let actual) = error else { return false }
            return source.contains("1.0-linux-amd64") && actual.architecture == "amd64" && "\(error)".contains("not linux/arm64")
        }
        #expect(try await fixture.client().headManifest(repository: "app", reference: "1.0") == nil)
    }

    @Test func windowsBuildMismatchIsRefusedAndMissingVersionCanBeVouchedFor() async throws {
        let fixture = try RegistryFixture(.http)
        let sources = try await fixture.pushPlatformImages(to: "app", format: .docker)
        let assembler = ManifestListAssembler(registries: fixture.pool)
        let wrongBuild = AssemblyRequest(
            target: try fixture.reference("app"), tags: ["w"],
            sources: [.init(reference: sources[2], expectedPlatform: try Platform(parsing: "windows/amd64:10.0.17763"))])
        await #expect { try await assembler.plan(wrongBuild) } throws: { $0 is AssemblyError }

        let unversioned = try await fixture.push(
            try TestImage.make(os: "windows", architecture: "amd64", format: .docker, layerText: "no version"), to: "app",
            tag: "win-bare")
        await #expect {
            try await assembler.plan(
                AssemblyRequest(target: try fixture.reference("app"), tags: ["w"], sources: [.init(reference: unversioned)]))
        } throws: { error in
            guard case AssemblyError.windowsWithoutOSVersion = error else { return false }
            return "\(error)".contains("os.version")
        }
        let vouched = try await assembler.plan(
            AssemblyRequest(
                target: try fixture.reference("app"), tags: ["w"],
                sources: [.init(reference: unversioned, expectedPlatform: try Platform(parsing: "windows/amd64:10.0.20348.1"))]))
        #expect(vouched.children[0].descriptor.platform?.osVersion == "10.0.20348.1")
    }

    @Test func twoImagesForOnePlatformAreRefused() async throws {
        let fixture = try RegistryFixture(.http)
        let first = try await fixture.push(
            try TestImage.make(os: "linux", architecture: "amd64", format: .docker, layerText: "1"), to: "d", tag: "a")
        let second = try await fixture.push(
            try TestImage.make(os: "linux", architecture: "x86_64", format: .docker, layerText: "2"), to: "d", tag: "b")
        await #expect {
            try await ManifestListAssembler(registries: fixture.pool).plan(
                AssemblyRequest(
                    target: try fixture.reference("d"), tags: ["t"], sources: [.init(reference: first), .init(reference: second)])
            )
        } throws: { error in
            guard case AssemblyError.duplicatePlatform = error else { return false }
            return "\(error)".contains("d:a") && "\(error)".contains("d:b")
        }
    }

    @Test(arguments: [RegistryMode.basic, .token])
    func wrongCredentialsAreReportedWithTheRegistryName(_ mode: RegistryMode) async throws {
        let fixture = try RegistryFixture(mode, credentials: .some(.basic(username: "manifold", password: "wrong")))
        await #expect { try await fixture.client().ping() } throws: { error in
            guard case RegistryError.unauthorized(let host, _, let hadCredentials, _) = error else { return false }
            return host == fixture.host && hadCredentials && "\(error)".contains("rejected the credentials")
        }
    }

    @Test(arguments: [RegistryMode.basic, .token])
    func anonymousPushIsRefusedWithAHint(_ mode: RegistryMode) async throws {
        let fixture = try RegistryFixture(mode, credentials: .some(nil))
        let image = try TestImage.make(os: "linux", architecture: "amd64", format: .docker, layerText: "anon")
        let hint = "Run `manifold registry login \(fixture.host) --username USER --password-stdin`"
        await #expect { try await fixture.push(image, to: "anon", tag: "x") } throws: { error in
            let text = "\(error)"
            switch (mode, error) {
            case (.basic, RegistryError.unauthorized(_, _, false, _)):
                // Basic auth: nothing at all may be done anonymously.
                return text.contains("requires authentication") && text.contains(hint)
            case (.token, RegistryError.denied(_, _, _, false, _)):
                // Token auth: anonymous pull is allowed, so what is missing is the push right.
                return text.contains("denied push access to repository anon") && text.contains(hint)
            default:
                return false
            }
        }
    }

    @Test func unknownBlobInAListIsExplainedWithTheRegistryCode() async throws {
        let fixture = try RegistryFixture(.http)
        let ghost = Descriptor(
            mediaType: MediaType.dockerManifest, digest: Digest.compute(of: Data("ghost".utf8)), size: 5,
            platform: Platform(os: "linux", architecture: "amd64"))
        let list = ImageIndex(schemaVersion: 2, mediaType: MediaType.dockerManifestList, manifests: [ghost])
        let raw = try RawManifest(bytes: try CanonicalJSON.encode(list), mediaType: MediaType.dockerManifestList)
        await #expect { try await fixture.client().pushManifest(repository: "g", reference: "t", manifest: raw) } throws: {
            error in
            let text = "\(error)"
            return text.contains("MANIFEST_BLOB_UNKNOWN") && text.contains("push or copy the child image")
        }
    }

    @Test func aTransient500IsRetriedAndThePushSucceeds() async throws {
        let fixture = try RegistryFixture(.http)
        let proxy = try FaultProxy.start(backend: fixture.registry.baseURL)
        defer { proxy.stop() }
        let pool = fixture.pool(through: proxy)
        defer { pool.shutdown() }
        let sources = try await fixture.pushPlatformImages(to: "flaky", format: .docker)
        let viaProxy = try sources.map { try ImageReference(registry: proxy.host, repository: $0.repository, tag: $0.tag) }
        try proxy.setRules([FaultRule(method: "PUT", pathRegex: "/manifests/", status: 500, times: 1)])
        let result = try await ManifestListAssembler(registries: pool).assemble(
            AssemblyRequest(
                target: try ImageReference(registry: proxy.host, repository: "flaky"), tags: ["1"],
                sources: viaProxy.map { .init(reference: $0) }))
        let log = proxy.requestLog()
        #expect(log.contains { $0.method == "PUT" && $0.status == 500 })
        #expect(log.contains { $0.method == "PUT" && $0.status == 201 })
        #expect(try fixture.skopeoRaw("\(fixture.host)/flaky:1") == result.plan.list.bytes)
    }

    @Test func a500ForeverFailsClearlyAndLeavesTheTagAlone() async throws {
        let fixture = try RegistryFixture(.http)
        let proxy = try FaultProxy.start(backend: fixture.registry.baseURL)
        defer { proxy.stop() }
        let pool = fixture.pool(through: proxy)
        defer { pool.shutdown() }
        let sources = try await fixture.pushPlatformImages(to: "down", format: .docker)
        let viaProxy = try sources.map { try ImageReference(registry: proxy.host, repository: $0.repository, tag: $0.tag) }
        try proxy.setRules([FaultRule(method: "PUT", pathRegex: "/manifests/", status: 500, times: -1)])
        await #expect {
            try await ManifestListAssembler(registries: pool).assemble(
                AssemblyRequest(
                    target: try ImageReference(registry: proxy.host, repository: "down"), tags: ["1"],
                    sources: viaProxy.map { .init(reference: $0) }))
        } throws: { error in
            "\(error)".contains("HTTP 500") && "\(error)".contains("pushing manifest")
        }
        #expect(proxy.requestLog().filter { $0.method == "PUT" && $0.status == 500 }.count == 3)
        #expect(try await fixture.client().headManifest(repository: "down", reference: "1") == nil)
    }

    @Test func chunkedUploadOfAFileReachesTheRegistryIntact() async throws {
        let fixture = try RegistryFixture(.token, chunkSize: 4096)
        let scratch = try ScratchDirectory(prefix: "chunked")
        defer { scratch.remove() }
        var bytes = Data(count: 20_000)
        for index in bytes.indices { bytes[index] = UInt8(truncatingIfNeeded: index &* 31 &+ 7) }
        let file = scratch.file("blob")
        try bytes.write(to: file)
        let digest = Digest.compute(of: bytes)
        try await fixture.client().uploadBlob(repository: "chunks", digest: digest, file: file, size: Int64(bytes.count))
        #expect(try await fixture.client().blobSize(repository: "chunks", digest: digest) == 20_000)
        #expect(try await fixture.client().fetchBlob(repository: "chunks", digest: digest) == bytes)
    }

    @Test func aDigestThatDoesNotMatchTheContentIsCaught() async throws {
        let fixture = try RegistryFixture(.http)
        let image = try TestImage.make(os: "linux", architecture: "amd64", format: .oci, layerText: "x")
        try await fixture.push(image, to: "v", tag: "t")
        // Ask for the manifest under a digest it does not have: the registry says unknown.
        let other = Digest.compute(of: Data("other".utf8))
        await #expect { try await fixture.client().fetchManifest(repository: "v", reference: other.description) } throws: {
            error in
            guard case RegistryError.notFound = error else { return false }
            return "\(error)".contains(other.description)
        }
    }
}
