import Foundation
import ManifoldCore
import Testing

/// Representative documents written for these tests in the shapes the OCI image-spec, Docker and buildx produce.
enum Samples {
    static let ociIndex = """
        {
          "schemaVersion": 2,
          "mediaType": "application/vnd.oci.image.index.v1+json",
          "manifests": [
            {
              "mediaType": "application/vnd.oci.image.manifest.v1+json",
              "size": 7143,
              "digest": "\(fakeDigest("1"))",
              "platform": { "architecture": "ppc64le", "os": "linux" }
            },
            {
              "mediaType": "application/vnd.oci.image.manifest.v1+json",
              "size": 7682,
              "digest": "\(fakeDigest("2"))",
              "platform": {
                "architecture": "amd64",
                "os": "windows",
                "os.version": "10.0.20348.2227",
                "os.features": ["win32k"]
              }
            }
          ],
          "annotations": {
            "com.example.key1": "value1",
            "org.opencontainers.image.source": "https://example.com/repo"
          }
        }
        """

    static let dockerManifestList = """
        {
           "schemaVersion": 2,
           "mediaType": "application/vnd.docker.distribution.manifest.list.v2+json",
           "manifests": [
              {
                 "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
                 "digest": "\(fakeDigest("3"))",
                 "size": 528,
                 "platform": { "architecture": "arm", "os": "linux", "variant": "v7" }
              },
              {
                 "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
                 "digest": "\(fakeDigest("4"))",
                 "size": 528,
                 "platform": { "architecture": "amd64", "os": "linux", "features": ["sse4"] }
              }
           ]
        }
        """

    static let buildxIndex = """
        {"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[\
        {"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"\(fakeDigest("5"))","size":1234,\
        "platform":{"architecture":"arm64","os":"linux"}},\
        {"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"\(fakeDigest("6"))","size":566,\
        "annotations":{"vnd.docker.reference.digest":"\(fakeDigest("5"))","vnd.docker.reference.type":"attestation-manifest"},\
        "platform":{"architecture":"unknown","os":"unknown"}}]}
        """

    static let dockerManifest = """
        {
           "schemaVersion": 2,
           "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
           "config": {
              "mediaType": "application/vnd.docker.container.image.v1+json",
              "size": 7023,
              "digest": "\(fakeDigest("7"))"
           },
           "layers": [
              {
                 "mediaType": "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
                 "size": 1669405542,
                 "digest": "\(fakeDigest("8"))",
                 "urls": ["https://mcr.microsoft.com/v2/windows/servercore/blobs/\(fakeDigest("8"))"]
              },
              {
                 "mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip",
                 "size": 32654,
                 "digest": "\(fakeDigest("9"))"
              }
           ]
        }
        """

    /// An OCI artifact manifest (no mediaType field) with the empty config, an embedded blob and a subject.
    static let ociArtifact = """
        {
          "schemaVersion": 2,
          "artifactType": "application/vnd.example.sbom.v1",
          "config": {
            "mediaType": "application/vnd.oci.empty.v1+json",
            "digest": "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a",
            "size": 2,
            "data": "e30="
          },
          "layers": [
            { "mediaType": "application/vnd.oci.image.layer.v1.tar+zstd", "digest": "\(fakeDigest("b"))", "size": 10 }
          ],
          "subject": {
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": "\(fakeDigest("c"))",
            "size": 1234
          },
          "annotations": { "org.opencontainers.image.created": "2024-01-02T03:04:05Z" }
        }
        """

    static let imageConfig = """
        {
          "created": "2024-01-02T03:04:05Z",
          "architecture": "amd64",
          "os": "windows",
          "os.version": "10.0.20348.2227",
          "config": { "Env": ["PATH=C:\\\\Windows"], "Cmd": ["cmd"] },
          "rootfs": { "type": "layers", "diff_ids": ["\(fakeDigest("d"))"] },
          "history": [{ "created_by": "Apply image 10.0.20348.2227" }]
        }
        """
}

@Suite struct ManifestTests {
    private func raw(_ text: String, _ mediaType: String?) throws -> RawManifest {
        try RawManifest(bytes: Data(text.utf8), mediaType: mediaType)
    }

    @Test func decodesAnOCIIndexWithWindowsPlatformFields() throws {
        let manifest = try raw(Samples.ociIndex, MediaType.ociImageIndex)
        guard case .index(let index) = try manifest.decoded() else {
            Issue.record("expected an index")
            return
        }
        #expect(index.schemaVersion == 2)
        #expect(index.mediaType == MediaType.ociImageIndex)
        #expect(index.manifests.count == 2)
        #expect(index.manifests[0].platform == Platform(os: "linux", architecture: "ppc64le"))
        let windows = try #require(index.manifests[1].platform)
        #expect(windows.osVersion == "10.0.20348.2227")
        #expect(windows.osFeatures == ["win32k"])
        #expect(index.manifests[1].size == 7682)
        #expect(index.manifests[1].digest.description == fakeDigest("2"))
        #expect(index.annotations?[Annotation.source] == "https://example.com/repo")
    }

    @Test func decodesADockerManifestList() throws {
        guard case .index(let list) = try raw(Samples.dockerManifestList, MediaType.dockerManifestList).decoded() else {
            Issue.record("expected a manifest list")
            return
        }
        #expect(list.mediaType == MediaType.dockerManifestList)
        #expect(list.manifests.map { $0.platform?.description } == ["linux/arm/v7", "linux/amd64"])
        #expect(list.manifests.allSatisfy { $0.mediaType == MediaType.dockerManifest })
    }

    @Test func decodesABuildxIndexWithAnAttestation() throws {
        guard case .index(let index) = try raw(Samples.buildxIndex, nil).decoded() else {
            Issue.record("expected an index")
            return
        }
        let attestation = index.manifests[1]
        #expect(attestation.platform == Platform(os: "unknown", architecture: "unknown"))
        #expect(attestation.annotations?[Annotation.dockerReferenceType] == Annotation.attestationManifestType)
        #expect(attestation.annotations?[Annotation.dockerReferenceDigest] == index.manifests[0].digest.description)
    }

    @Test func decodesADockerImageManifestWithForeignLayers() throws {
        guard case .image(let image) = try raw(Samples.dockerManifest, MediaType.dockerManifest).decoded() else {
            Issue.record("expected an image manifest")
            return
        }
        #expect(image.config.mediaType == MediaType.dockerImageConfig)
        #expect(image.layers.count == 2)
        #expect(image.layers[0].mediaType == MediaType.dockerForeignLayerTarGzip)
        #expect(image.layers[0].size == 1_669_405_542)
        #expect(image.layers[0].urls?.count == 1)
        #expect(image.layers[1].urls == nil)
    }

    @Test func decodesAnOCIArtifactManifestWithoutAMediaTypeField() throws {
        let manifest = try raw(Samples.ociArtifact, "application/json")
        #expect(manifest.mediaType == MediaType.ociImageManifest)
        guard case .image(let image) = try manifest.decoded() else {
            Issue.record("expected an image manifest")
            return
        }
        #expect(image.mediaType == nil)
        #expect(image.artifactType == "application/vnd.example.sbom.v1")
        #expect(image.config.mediaType == MediaType.ociEmpty)
        #expect(image.config.data.flatMap { Data(base64Encoded: $0) } == Data("{}".utf8))
        #expect(image.config.digest == Digest.compute(of: Data("{}".utf8)))
        #expect(image.subject?.digest.description == fakeDigest("c"))
        #expect(image.annotations?[Annotation.created] == "2024-01-02T03:04:05Z")
    }

    @Test(arguments: [
        Samples.ociIndex, Samples.dockerManifestList, Samples.buildxIndex, Samples.dockerManifest, Samples.ociArtifact,
    ])
    func roundTripsThroughCanonicalJSON(_ text: String) throws {
        let content = try raw(text, nil).decoded()
        let encoded: Data
        switch content {
        case .image(let image): encoded = try CanonicalJSON.encode(image)
        case .index(let index): encoded = try CanonicalJSON.encode(index)
        }
        let again = try RawManifest(bytes: encoded, mediaType: nil)
        #expect(try again.decoded() == content)
        #expect(try CanonicalJSON.encode(again.decoded().encodable) == encoded, "canonical encoding is stable")
        let json = String(decoding: encoded, as: UTF8.self)
        #expect(!json.contains("null"), "nil fields are omitted")
        #expect(!json.contains("\\/"), "slashes are not escaped")
    }

    @Test func encodingOmitsNilFieldsAndSortsKeys() throws {
        let descriptor = Descriptor(mediaType: MediaType.ociImageManifest, digest: try Digest(parsing: fakeDigest()), size: 3)
        let json = String(decoding: try CanonicalJSON.encode(descriptor), as: UTF8.self)
        #expect(json == #"{"digest":"\#(fakeDigest())","mediaType":"application/vnd.oci.image.manifest.v1+json","size":3}"#)

        let index = ImageIndex(manifests: [descriptor])
        #expect(
            String(decoding: try CanonicalJSON.encode(index), as: UTF8.self)
                == #"{"manifests":[\#(json)],"mediaType":"application/vnd.oci.image.index.v1+json","schemaVersion":2}"#)
    }

    @Test func canonicalEncodingIsDeterministic() throws {
        var annotations: [String: String] = [:]
        for number in 0..<50 { annotations["key.\(number)"] = "value/\(number)" }
        let index = ImageIndex(manifests: [], annotations: annotations)
        let first = try CanonicalJSON.encode(index)
        for _ in 0..<5 {
            #expect(try CanonicalJSON.encode(ImageIndex(manifests: [], annotations: annotations)) == first)
        }
    }

    @Test func canonicalIndexIsAcceptedByTheOCISchema() throws {
        let index = ImageIndex(
            mediaType: MediaType.ociImageIndex,
            manifests: [
                Descriptor(
                    mediaType: MediaType.ociImageManifest, digest: Digest.compute(of: Data("amd64".utf8)), size: 100,
                    platform: Platform(os: "linux", architecture: "amd64")),
                Descriptor(
                    mediaType: MediaType.ociImageManifest, digest: Digest.compute(of: Data("windows".utf8)), size: 200,
                    annotations: ["org.opencontainers.image.ref.name": "ltsc2022"],
                    platform: Platform(
                        os: "windows", architecture: "amd64", osVersion: "10.0.20348.2227", osFeatures: ["win32k"])),
                Descriptor(
                    mediaType: MediaType.ociImageManifest, digest: Digest.compute(of: Data("att".utf8)), size: 300,
                    annotations: [
                        Annotation.dockerReferenceType: Annotation.attestationManifestType,
                        Annotation.dockerReferenceDigest: Digest.compute(of: Data("amd64".utf8)).description,
                    ],
                    platform: Platform(os: "unknown", architecture: "unknown")),
            ],
            annotations: [Annotation.created: "2024-01-02T03:04:05Z", Annotation.source: "https://example.com/repo"])
        let (status, output) = try validate(try CanonicalJSON.encode(index), schema: "image-index-schema.json")
        #expect(status == 0, "schema validation failed: \(output)")
    }

    @Test func schemaValidatorRejectsABrokenIndex() throws {
        let (status, output) = try validate(
            Data(#"{"schemaVersion":3,"manifests":[{"mediaType":"x","size":1,"digest":"nope"}]}"#.utf8),
            schema: "image-index-schema.json")
        #expect(status == 1)
        #expect(output.contains("schemaVersion"))
    }

    @Test(arguments: [Samples.ociArtifact, Samples.dockerManifest])
    func canonicalManifestIsAcceptedByTheOCISchema(_ text: String) throws {
        guard case .image(let image) = try raw(text, nil).decoded() else {
            Issue.record("expected an image manifest")
            return
        }
        let (status, output) = try validate(try CanonicalJSON.encode(image), schema: "image-manifest-schema.json")
        #expect(status == 0, "schema validation failed: \(output)")
    }

    @Test(arguments: [Samples.ociIndex, Samples.dockerManifest, Samples.buildxIndex])
    func rawManifestDigestMatchesOpenSSL(_ text: String) throws {
        let manifest = try raw(text, nil)
        #expect(manifest.digest.hex == (try opensslHex("sha256", of: manifest.bytes)))
        let sha512 = try RawManifest(bytes: manifest.bytes, mediaType: nil, algorithm: .sha512)
        #expect(sha512.digest.hex == (try opensslHex("sha512", of: manifest.bytes)))
        #expect(manifest.bytes == Data(text.utf8), "bytes are kept exactly")
    }

    static let mediaTypeDetection: [(String, String?, String)] = [
        (Samples.ociIndex, nil, MediaType.ociImageIndex),
        (Samples.dockerManifestList, "application/json", MediaType.dockerManifestList),
        (Samples.dockerManifest, "text/plain; charset=utf-8", MediaType.dockerManifest),
        (#"{"schemaVersion":2,"manifests":[]}"#, nil, MediaType.ociImageIndex),
        (#"{"schemaVersion":2,"config":{},"layers":[]}"#, "application/octet-stream", MediaType.ociImageManifest),
        (Samples.ociIndex, "application/vnd.oci.image.index.v1+json; charset=utf-8", MediaType.ociImageIndex),
        (Samples.ociIndex, MediaType.dockerManifestList, MediaType.dockerManifestList),
    ]

    @Test(arguments: mediaTypeDetection)
    func mediaTypeComesFromTheHeaderThenTheDocument(text: String, header: String?, expected: String) throws {
        #expect(try raw(text, header).mediaType == expected)
    }

    static let unusable: [(String, String?, String)] = [
        ("not json", nil, "is not valid JSON"),
        ("[1,2]", nil, "not an object"),
        (#"{"schemaVersion":2}"#, nil, "cannot tell what kind of manifest"),
        (#"{"schemaVersion":2}"#, "application/json", "the media type is \"application/json\""),
    ]

    @Test(arguments: unusable)
    func rejectsUnusableDocuments(text: String, header: String?, mentions: String) {
        #expect {
            try raw(text, header)
        } throws: { error in
            (error as? ManifestError)?.description.contains(mentions) == true
        }
    }

    @Test func verifyNamesBothDigests() throws {
        let manifest = try raw(Samples.ociIndex, nil)
        try manifest.verify(expected: manifest.digest)
        try manifest.verify(expected: Digest.compute(.sha512, of: manifest.bytes))
        let wrong = try Digest(parsing: fakeDigest("0"))
        #expect {
            try manifest.verify(expected: wrong)
        } throws: { error in
            let text = "\(error)"
            return text.contains(wrong.description) && text.contains(manifest.digest.description)
        }
    }

    @Test func decodedRejectsUnsupportedAndMalformedDocuments() throws {
        let signed = try raw(#"{"schemaVersion":1,"name":"x"}"#, MediaType.dockerManifestV1Signed)
        #expect {
            try signed.decoded()
        } throws: { error in
            "\(error)".contains("unsupported manifest media type \"\(MediaType.dockerManifestV1Signed)\"")
        }
        let missingDigest = try raw(
            #"{"schemaVersion":2,"manifests":[{"mediaType":"a/b","size":1}]}"#, MediaType.ociImageIndex)
        #expect {
            try missingDigest.decoded()
        } throws: { error in
            "\(error)".contains("missing the required field \"digest\"")
        }
        let badDigest = try raw(
            #"{"schemaVersion":2,"manifests":[{"mediaType":"a/b","size":1,"digest":"sha256:ABC"}]}"#, MediaType.ociImageIndex)
        #expect {
            try badDigest.decoded()
        } throws: { error in
            "\(error)".contains("manifests[0].digest") && "\(error)".contains("uppercase")
        }
    }

    @Test func imageConfigKeepsOnlyPlatformFields() throws {
        let config = try JSONDecoder().decode(ImageConfig.self, from: Data(Samples.imageConfig.utf8))
        #expect(config.platform == Platform(os: "windows", architecture: "amd64", osVersion: "10.0.20348.2227"))
        #expect(config.created == "2024-01-02T03:04:05Z")
        #expect(config.variant == nil)
    }

    @Test func mediaTypeClassification() {
        #expect(
            MediaType.allManifestTypes == [
                MediaType.ociImageIndex, MediaType.dockerManifestList, MediaType.ociImageManifest, MediaType.dockerManifest,
            ])
        #expect(MediaType.isIndex(MediaType.dockerManifestList))
        #expect(MediaType.isIndex("application/vnd.oci.image.index.v1+json; charset=utf-8"))
        #expect(!MediaType.isIndex(MediaType.ociImageManifest))
        #expect(MediaType.isImageManifest(MediaType.dockerManifest))
        #expect(!MediaType.isImageManifest(MediaType.dockerManifestV1Signed))
        #expect(!MediaType.isImageManifest(MediaType.ociImageConfig))
    }

    /// Validates `document` against one of the OCI JSON schemas in /work/shared/oci-schema with the `python3` on PATH (which must have `jsonschema`).
    private func validate(_ document: Data, schema: String) throws -> (status: Int32, output: String) {
        // The schemas are draft-04 with nested `id`s under https://opencontainers.org/schema/ and relative `$ref`s,
        // so references resolve to https URLs; serve each from the local file of the same name, never the network.
        let script = """
            import json, pathlib, sys, warnings
            warnings.simplefilter("ignore")
            import jsonschema
            directory = pathlib.Path(sys.argv[1])
            def load(uri):
                return json.loads((directory / uri.split("#")[0].rsplit("/", 1)[-1]).read_text())
            target = (directory / sys.argv[2]).resolve().as_uri()
            resolver = jsonschema.RefResolver(
                base_uri=target, referrer=load(target), handlers={"https": load, "http": load, "file": load})
            validator = jsonschema.Draft4Validator(load(target), resolver=resolver)
            errors = sorted(validator.iter_errors(json.load(sys.stdin)), key=str)
            for error in errors:
                print(list(error.absolute_path), error.message)
            sys.exit(1 if errors else 0)
            """
        return try runTool("/usr/bin/env", ["python3", "-c", script, "/work/shared/oci-schema", schema], input: document)
    }
}

extension RawManifest.Content {
    /// The decoded document as something `CanonicalJSON` can encode.
    fileprivate var encodable: any Encodable {
        switch self {
        case .image(let image): image
        case .index(let index): index
        }
    }
}
