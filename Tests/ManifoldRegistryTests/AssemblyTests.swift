import Foundation
import ManifoldCore
import ManifoldTestSupport
import Testing

@testable import ManifoldRegistry

/// Publishing lists against the real `docker-registry`, read back with skopeo and checked against the OCI schema.
@Suite struct AssemblyTests {
    @Test(arguments: RegistryMode.allCases)
    func publishesADockerListInEveryRegistryMode(_ mode: RegistryMode) async throws {
        let fixture = try RegistryFixture(mode)
        let sources = try await fixture.pushPlatformImages(to: "team/app", format: .docker)
        let assembler = ManifestListAssembler(registries: fixture.pool)
        let result = try await assembler.assemble(
            AssemblyRequest(
                target: try fixture.reference("team/app"), tags: ["1.0", "latest"],
                sources: sources.map { AssemblySource(reference: $0) }))

        #expect(result.plan.list.mediaType == MediaType.dockerManifestList)
        #expect(result.tags == ["1.0", "latest"])
        guard case .index(let index) = try result.plan.list.decoded() else {
            Issue.record("the list is not an index")
            return
        }
        #expect(
            index.manifests.map { $0.platform?.description } == [
                "linux/amd64", "linux/arm64/v8", "windows/amd64:10.0.20348.2227",
            ])
        #expect(index.manifests.allSatisfy { $0.mediaType == MediaType.dockerManifest })
        for tag in ["1.0", "latest"] {
            #expect(try fixture.skopeoRaw("\(fixture.host)/team/app:\(tag)") == result.plan.list.bytes)
        }
        #expect(try fixture.skopeoRaw("\(fixture.host)/team/app@\(result.digest)") == result.plan.list.bytes)

        if mode == .token {
            // The token server saw a push scope for the target before any pull-only scope.
            let log = fixture.registry.tokenServer?.output() ?? ""
            #expect(log.contains("repository:team/app:pull,push") || log.contains("repository%3Ateam%2Fapp%3Apull%2Cpush"))
        }
    }

    @Test(arguments: [RegistryMode.http, .token])
    func publishesAnOCIIndexThatValidatesAgainstTheSchema(_ mode: RegistryMode) async throws {
        let fixture = try RegistryFixture(mode)
        let sources = try await fixture.pushPlatformImages(to: "oci/app", format: .oci)
        let result = try await ManifestListAssembler(registries: fixture.pool).assemble(
            AssemblyRequest(
                target: try fixture.reference("oci/app"), tags: ["v2"], sources: sources.map { AssemblySource(reference: $0) },
                annotations: ["org.opencontainers.image.source": "https://example.invalid/app"]))
        #expect(result.plan.list.mediaType == MediaType.ociImageIndex)
        let validation = try OCISchema.validate(result.plan.list.bytes, schema: "image-index-schema.json")
        #expect(validation.valid, "\(validation.message)")
        guard case .index(let index) = try result.plan.list.decoded() else { throw TestEnvironmentError("not an index") }
        #expect(index.annotations?["org.opencontainers.image.source"] == "https://example.invalid/app")
        #expect(index.manifests[2].platform?.osVersion == "10.0.20348.2227")
        #expect(try fixture.skopeoRaw("\(fixture.host)/oci/app:v2") == result.plan.list.bytes)
    }

    @Test func mixedFormatsBecomeAnOCIIndexAndDockerFormatIsRefused() async throws {
        let fixture = try RegistryFixture(.http)
        let docker = try await fixture.push(
            try TestImage.make(os: "linux", architecture: "amd64", format: .docker, layerText: "d"), to: "mix", tag: "amd64")
        let oci = try await fixture.push(
            try TestImage.make(os: "linux", architecture: "arm64", format: .oci, layerText: "o"), to: "mix", tag: "arm64")
        let assembler = ManifestListAssembler(registries: fixture.pool)
        let request = AssemblyRequest(
            target: try fixture.reference("mix"), tags: ["t"], sources: [.init(reference: docker), .init(reference: oci)])
        #expect(try await assembler.plan(request).list.mediaType == MediaType.ociImageIndex)
        var forced = request
        forced.format = .docker
        await #expect { try await assembler.plan(forced) } throws: { "\($0)".contains("some children are OCI manifests") }
    }

    @Test func dockerCLIReadsTheListWithOSVersion() async throws {
        let fixture = try RegistryFixture(.http)
        let sources = try await fixture.pushPlatformImages(to: "cli/app", format: .docker)
        _ = try await ManifestListAssembler(registries: fixture.pool).assemble(
            AssemblyRequest(target: try fixture.reference("cli/app"), tags: ["1"], sources: sources.map { .init(reference: $0) }))
        let scratch = try ScratchDirectory(prefix: "docker-cli")
        defer { scratch.remove() }
        let result = try await runCommand(
            "docker", ["manifest", "inspect", "--insecure", "\(fixture.host)/cli/app:1"],
            environment: ["DOCKER_CONFIG": scratch.path])
        #expect(result.status == 0, "\(result.stderr)")
        let document = try JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any]
        let manifests = document?["manifests"] as? [[String: Any]] ?? []
        let platforms = manifests.compactMap { $0["platform"] as? [String: Any] }
        #expect(
            platforms.map { "\($0["os"] ?? "")/\($0["architecture"] ?? "")" } == ["linux/amd64", "linux/arm64", "windows/amd64"])
        #expect(platforms.last?["os.version"] as? String == "10.0.20348.2227")
    }

    @Test func sameInputsGiveTheSameBytes() async throws {
        let fixture = try RegistryFixture(.http)
        let sources = try await fixture.pushPlatformImages(to: "det", format: .oci)
        let assembler = ManifestListAssembler(registries: fixture.pool)
        let request = AssemblyRequest(
            target: try fixture.reference("det"), tags: ["a"], sources: sources.map { .init(reference: $0) })
        let first = try await assembler.assemble(request)
        let second = try await assembler.assemble(request)
        #expect(first.plan.list.bytes == second.plan.list.bytes)
        #expect(first.digest == second.digest)
        // The same images named by digest instead of tag give the same list.
        let byDigest = first.plan.children.map { AssemblySource(reference: $0.source) }
        #expect(
            try await assembler.plan(AssemblyRequest(target: request.target, tags: ["a"], sources: byDigest)).list.digest
                == first.digest)
    }

    /// After the push every tag is read back and every child asked for, side by side: a registry that answers a tag
    /// with other bytes, or no longer has a child, fails the publication with that named.
    @Test func whatTheRegistryDoesNotHoldAfterThePushFailsThePublication() async throws {
        let fixture = try RegistryFixture(.http)
        let proxy = try fixture.registry.withFaultProxy()
        defer { proxy.stop() }
        let pool = fixture.pool(through: proxy)
        defer { pool.shutdown() }
        _ = try await fixture.pushPlatformImages(to: "checked", format: .oci)
        let sources = try ["1.0-linux-amd64", "1.0-linux-arm64", "1.0-windows-amd64"].map {
            AssemblySource(reference: try ImageReference(registry: proxy.host, repository: "checked", tag: $0))
        }
        let assembler = ManifestListAssembler(registries: pool)
        let request = AssemblyRequest(
            target: try ImageReference(registry: proxy.host, repository: "checked"), tags: ["a", "b"], sources: sources)
        let other = #"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[]}"#
        try proxy.setRules([
            FaultRule(
                method: "GET", pathRegex: "/manifests/b$", status: 200, times: FaultRule.forever, body: other,
                headers: ["Content-Type": "application/vnd.oci.image.index.v1+json"])
        ])
        await #expect {
            _ = try await assembler.assemble(request)
        } throws: { error in
            guard case AssemblyError.readBackMismatch(let tag, _, _) = error else { return false }
            return tag == "b"
        }
        let plan = try await assembler.plan(request)
        let missing = plan.children[2].descriptor.digest.description
        try proxy.setRules([
            FaultRule(method: "HEAD", pathRegex: "/manifests/\(missing)$", status: 404, times: FaultRule.forever)
        ])
        await #expect {
            _ = try await assembler.publish(plan)
        } throws: { error in
            guard case AssemblyError.childMissing(let child, _, _) = error else { return false }
            return child == missing
        }
        try proxy.clearRules()
        #expect(try await assembler.publish(plan).digest == plan.list.digest)
    }

    @Test func rebuildingOnePlatformRepublishesWithANewChild() async throws {
        let fixture = try RegistryFixture(.http)
        let sources = try await fixture.pushPlatformImages(to: "re", format: .docker)
        let assembler = ManifestListAssembler(registries: fixture.pool)
        let request = AssemblyRequest(
            target: try fixture.reference("re"), tags: ["1"], sources: sources.map { .init(reference: $0) })
        let before = try await assembler.assemble(request)
        try await fixture.push(
            try TestImage.make(os: "linux", architecture: "arm64", variant: "v8", format: .docker, layerText: "rebuilt"),
            to: "re", tag: "1.0-linux-arm64")
        let after = try await assembler.assemble(request)
        #expect(after.digest != before.digest)
        #expect(after.plan.children[0].descriptor.digest == before.plan.children[0].descriptor.digest)
        #expect(after.plan.children[1].descriptor.digest != before.plan.children[1].descriptor.digest)
        #expect(try fixture.skopeoRaw("\(fixture.host)/re:1") == after.plan.list.bytes)
    }

    @Test func flattensAnIndexAndKeepsAttestationsAfterTheImages() async throws {
        let fixture = try RegistryFixture(.http)
        let client = try fixture.client()
        // A buildx-style index: two images and one attestation manifest for the first.
        let amd64 = try TestImage.make(os: "linux", architecture: "amd64", format: .oci, layerText: "bx amd64")
        let arm64 = try TestImage.make(os: "linux", architecture: "arm64", format: .oci, layerText: "bx arm64")
        try await fixture.push(amd64, to: "bx", tag: "amd64")
        try await fixture.push(arm64, to: "bx", tag: "arm64")
        let attestation = try await pushAttestation(
            for: try Digest(parsing: amd64.manifestDigest), repository: "bx", fixture: fixture)
        let buildxIndex = ImageIndex(
            schemaVersion: 2, mediaType: MediaType.ociImageIndex,
            manifests: [
                Descriptor(
                    mediaType: MediaType.ociImageManifest, digest: try Digest(parsing: amd64.manifestDigest),
                    size: Int64(amd64.manifest.count), platform: Platform(os: "linux", architecture: "amd64")),
                Descriptor(
                    mediaType: MediaType.ociImageManifest, digest: try Digest(parsing: arm64.manifestDigest),
                    size: Int64(arm64.manifest.count), platform: Platform(os: "linux", architecture: "arm64")),
                attestation,
            ])
        let indexManifest = try RawManifest(bytes: try CanonicalJSON.encode(buildxIndex), mediaType: MediaType.ociImageIndex)
        try await client.pushManifest(repository: "bx", reference: "multi", manifest: indexManifest)
        let windows = try await fixture.push(
            try TestImage.make(os: "windows", architecture: "amd64", osVersion: "10.0.17763.5830", format: .oci, layerText: "w"),
            to: "win", tag: "ltsc2019")

        let result = try await ManifestListAssembler(registries: fixture.pool).assemble(
            AssemblyRequest(
                target: try fixture.reference("bx"), tags: ["all"],
                sources: [.init(reference: try fixture.reference("bx", tag: "multi")), .init(reference: windows)]))
        guard case .index(let index) = try result.plan.list.decoded() else { throw TestEnvironmentError("not an index") }
        #expect(
            index.manifests.map { $0.platform?.description ?? "-" } == [
                "linux/amd64", "linux/arm64", "windows/amd64:10.0.17763.5830", "unknown/unknown",
            ])
        #expect(index.manifests.last?.annotations?["vnd.docker.reference.type"] == "attestation-manifest")
        #expect(result.copiedChildren == 1)  // the Windows image came from another repository
        let copied = result.plan.children[2].descriptor.digest.description
        #expect(try await client.headManifest(repository: "bx", reference: copied) != nil)

        // Asking for one platform of an index takes that image and its attestation only.
        let only = try await ManifestListAssembler(registries: fixture.pool).plan(
            AssemblyRequest(
                target: try fixture.reference("bx"), tags: ["amd64-only"],
                sources: [
                    .init(
                        reference: try fixture.reference("bx", tag: "multi"),
                        expectedPlatform: try Platform(parsing: "linux/amd64"))
                ]))
        #expect(only.children.map(\.role) == [.image, .attestation])
    }

    /// Pushes an OCI index of one linux image per architecture to `repository:multi`, sets the fault proxy's `rules`
    /// for those images, and plans a list from the index through the proxy. Returns the plan's outcome, the images in
    /// the index's order, and the paths the proxy answered, in the order it answered them.
    private func planIndexThroughProxy(
        _ repository: String, architectures: [String], rules: ([TestImage]) -> [FaultRule]
    ) async throws -> (plan: Result<AssemblyPlan, any Error>, images: [TestImage], paths: [String]) {
        let fixture = try RegistryFixture(.http)
        let proxy = try fixture.registry.withFaultProxy()
        defer { proxy.stop() }
        let pool = fixture.pool(through: proxy)
        defer { pool.shutdown() }
        var images: [TestImage] = []
        for architecture in architectures {
            let image = try TestImage.make(
                os: "linux", architecture: architecture, format: .oci, layerText: "\(repository) \(architecture)")
            try await fixture.push(image, to: repository, tag: architecture)
            images.append(image)
        }
        let index = ImageIndex(
            schemaVersion: 2, mediaType: MediaType.ociImageIndex,
            manifests: try images.map { image in
                Descriptor(
                    mediaType: MediaType.ociImageManifest, digest: try Digest(parsing: image.manifestDigest),
                    size: Int64(image.manifest.count), platform: Platform(os: "linux", architecture: image.architecture))
            })
        let manifest = try RawManifest(bytes: try CanonicalJSON.encode(index), mediaType: MediaType.ociImageIndex)
        try await fixture.client().pushManifest(repository: repository, reference: "multi", manifest: manifest)
        try proxy.setRules(rules(images))

        let request = AssemblyRequest(
            target: try ImageReference(registry: proxy.host, repository: repository), tags: ["all"],
            sources: [.init(reference: try ImageReference(registry: proxy.host, repository: repository, tag: "multi"))])
        let plan: Result<AssemblyPlan, any Error>
        do {
            plan = .success(try await ManifestListAssembler(registries: pool).plan(request))
        } catch {
            plan = .failure(error)
        }
        return (plan, images, proxy.requestLog().map(\.path))
    }

    /// An index's entries are read side by side: with the first entry's manifest held back at the registry, the
    /// others' manifests and configs are read meanwhile. The list keeps the index's order.
    @Test func theEntriesOfAnIndexAreReadSideBySide() async throws {
        let (plan, images, paths) = try await planIndexThroughProxy("wide", architectures: ["amd64", "arm64", "s390x"]) {
            [FaultRule(method: "GET", pathRegex: "/manifests/\($0[0].manifestDigest)$", delay: 1)]
        }
        #expect(
            try plan.get().children.map { $0.descriptor.platform?.description } == ["linux/amd64", "linux/arm64", "linux/s390x"])
        let held = try #require(paths.firstIndex { $0.hasSuffix("/manifests/\(images[0].manifestDigest)") })
        for image in images.dropFirst() {
            let manifest = try #require(paths.firstIndex { $0.hasSuffix("/manifests/\(image.manifestDigest)") })
            let config = try #require(paths.firstIndex { $0.hasSuffix("/blobs/\(image.config.digest)") })
            #expect(manifest < held && config < held, "\(paths)")
        }
    }

    /// When several entries fail, the error is the first failing entry's in the index's order, whichever answer came
    /// first.
    @Test func theFirstFailingEntryInTheIndexsOrderIsTheError() async throws {
        let unknown = FaultRule.registryError("MANIFEST_UNKNOWN", "manifest unknown")
        let (plan, images, paths) = try await planIndexThroughProxy("broken", architectures: ["amd64", "arm64"]) { images in
            [
                FaultRule(
                    method: "GET", pathRegex: "/manifests/\(images[0].manifestDigest)$", status: 404, times: FaultRule.forever,
                    delay: 0.5, body: unknown),
                FaultRule(
                    method: "GET", pathRegex: "/manifests/\(images[1].manifestDigest)$", status: 404, times: FaultRule.forever,
                    body: unknown),
            ]
        }
        guard case .failure(let error) = plan else { throw TestEnvironmentError("the plan succeeded: \(plan)") }
        #expect("\(error)".contains(images[0].manifestDigest) && !"\(error)".contains(images[1].manifestDigest), "\(error)")
        let first = try #require(paths.firstIndex { $0.hasSuffix("/manifests/\(images[0].manifestDigest)") })
        let second = try #require(paths.firstIndex { $0.hasSuffix("/manifests/\(images[1].manifestDigest)") })
        #expect(second < first, "the second entry's refusal came first: \(paths)")
    }

    /// An entry that fails ends the reading: entries after it that were not started yet are never asked for, so an
    /// index whose first child is gone costs a few requests, not two per entry.
    @Test func aFailingEntryStopsTheEntriesNotStartedYet() async throws {
        let architectures = ["amd64", "arm64", "s390x", "ppc64le", "386", "riscv64", "mips64le", "mips", "loong64", "arm"]
        #expect(architectures.count > ManifestListAssembler.entriesReadAtOnce)
        let (plan, images, paths) = try await planIndexThroughProxy("gone", architectures: architectures) { images in
            let slow = images[1..<ManifestListAssembler.entriesReadAtOnce].map(\.manifestDigest).joined(separator: "|")
            return [
                FaultRule(
                    method: "GET", pathRegex: "/manifests/\(images[0].manifestDigest)$", status: 404, times: FaultRule.forever,
                    body: FaultRule.registryError("MANIFEST_UNKNOWN", "manifest unknown")),
                FaultRule(method: "GET", pathRegex: "/manifests/(\(slow))$", times: FaultRule.forever, delay: 1),
            ]
        }
        guard case .failure(let error) = plan else { throw TestEnvironmentError("the plan succeeded: \(plan)") }
        #expect("\(error)".contains(images[0].manifestDigest), "\(error)")
        for image in images[ManifestListAssembler.entriesReadAtOnce...] {
            #expect(!paths.contains { $0.hasSuffix("/manifests/\(image.manifestDigest)") }, "\(paths)")
        }
    }

    @Test func theSameIndexTwiceListsEachAttestationOnce() async throws {
        let fixture = try RegistryFixture(.http)
        let amd64 = try TestImage.make(os: "linux", architecture: "amd64", format: .oci, layerText: "twice amd64")
        try await fixture.push(amd64, to: "twice", tag: "amd64")
        let attestation = try await pushAttestation(
            for: try Digest(parsing: amd64.manifestDigest), repository: "twice", fixture: fixture)
        let index = ImageIndex(
            schemaVersion: 2, mediaType: MediaType.ociImageIndex,
            manifests: [
                Descriptor(
                    mediaType: MediaType.ociImageManifest, digest: try Digest(parsing: amd64.manifestDigest),
                    size: Int64(amd64.manifest.count), platform: Platform(os: "linux", architecture: "amd64")),
                attestation,
            ])
        let raw = try RawManifest(bytes: try CanonicalJSON.encode(index), mediaType: MediaType.ociImageIndex)
        try await fixture.client().pushManifest(repository: "twice", reference: "multi", manifest: raw)
        let source = try fixture.reference("twice", tag: "multi")
        let plan = try await ManifestListAssembler(registries: fixture.pool).plan(
            AssemblyRequest(
                target: try fixture.reference("twice"), tags: ["t"],
                sources: [.init(reference: source), .init(reference: source)]))
        #expect(plan.children.map(\.role) == [.image, .attestation])
        guard case .index(let list) = try plan.list.decoded() else { throw TestEnvironmentError("not an index") }
        #expect(list.manifests.map(\.digest) == [try Digest(parsing: amd64.manifestDigest), attestation.digest])
    }

    func pushAttestation(for subject: Digest, repository: String, fixture: RegistryFixture) async throws -> Descriptor {
        let client = try fixture.client()
        let config = Data(#"{"architecture":"unknown","os":"unknown","config":{},"rootfs":{"type":"layers","diff_ids":[]}}"#.utf8)
        let statement = Data(
            #"{"_type":"https://in-toto.io/Statement/v0.1","predicateType":"https://slsa.dev/provenance/v0.2"}"#.utf8)
        let configDigest = Digest.compute(of: config)
        let layerDigest = Digest.compute(of: statement)
        try await client.uploadBlob(repository: repository, digest: configDigest, data: config)
        try await client.uploadBlob(repository: repository, digest: layerDigest, data: statement)
        let manifest = ImageManifest(
            schemaVersion: 2, mediaType: MediaType.ociImageManifest,
            config: Descriptor(mediaType: MediaType.ociImageConfig, digest: configDigest, size: Int64(config.count)),
            layers: [Descriptor(mediaType: "application/vnd.in-toto+json", digest: layerDigest, size: Int64(statement.count))])
        let raw = try RawManifest(bytes: try CanonicalJSON.encode(manifest), mediaType: MediaType.ociImageManifest)
        try await client.pushManifest(repository: repository, reference: raw.digest.description, manifest: raw)
        return Descriptor(
            mediaType: MediaType.ociImageManifest, digest: raw.digest, size: Int64(raw.bytes.count),
            annotations: [
                "vnd.docker.reference.type": "attestation-manifest", "vnd.docker.reference.digest": subject.description,
            ],
            platform: Platform(os: "unknown", architecture: "unknown"))
    }

    @Test func copiesChildrenFromAnotherRepositoryByMount() async throws {
        let fixture = try RegistryFixture(.basic)
        let sources = try await fixture.pushPlatformImages(to: "builds/app", format: .docker)
        let result = try await ManifestListAssembler(registries: fixture.pool).assemble(
            AssemblyRequest(
                target: try fixture.reference("release/app"), tags: ["1"], sources: sources.map { .init(reference: $0) }))
        #expect(result.copiedChildren == 3)
        let client = try fixture.client()
        for child in result.plan.children {
            #expect(
                try await client.headManifest(repository: "release/app", reference: child.descriptor.digest.description) != nil)
            for blob in child.blobs {
                #expect(try await client.blobSize(repository: "release/app", digest: blob.digest) == blob.size)
            }
        }
        #expect(try fixture.skopeoRaw("\(fixture.host)/release/app:1") == result.plan.list.bytes)
    }

    @Test func copiesChildrenAcrossRegistries() async throws {
        let source = try RegistryFixture(.tls)
        let target = try RegistryFixture(.token)
        let images = try await source.pushPlatformImages(to: "upstream/app", format: .oci)
        var configuration = RegistryFixture.configuration(for: target.registry)
        configuration.caFiles[source.host] = [source.registry.certificates!.caCertificate.path]
        let pool = RegistryClientPool(configuration: configuration)
        defer { pool.shutdown() }
        let result = try await ManifestListAssembler(registries: pool).assemble(
            AssemblyRequest(target: try target.reference("mirror/app"), tags: ["1"], sources: images.map { .init(reference: $0) })
        )
        #expect(result.copiedChildren == 3)
        #expect(try target.skopeoRaw("\(target.host)/mirror/app:1") == result.plan.list.bytes)
    }
}
