import Foundation
import ManifoldCore
import Testing

@Suite struct ImageReferenceTests {
    struct Valid: Sendable, CustomTestStringConvertible {
        let input: String
        let registry: String
        let repository: String
        var tag: String? = nil
        var digest: String? = nil
        let description: String
        let familiar: String
        var testDescription: String { input }
    }

    static let digestA = fakeDigest("a")

    static let valid: [Valid] = [
        Valid(
            input: "ubuntu", registry: "docker.io", repository: "library/ubuntu",
            description: "docker.io/library/ubuntu", familiar: "ubuntu"),
        Valid(
            input: "ubuntu:22.04", registry: "docker.io", repository: "library/ubuntu", tag: "22.04",
            description: "docker.io/library/ubuntu:22.04", familiar: "ubuntu:22.04"),
        Valid(
            input: "docker.io/ubuntu", registry: "docker.io", repository: "library/ubuntu",
            description: "docker.io/library/ubuntu", familiar: "ubuntu"),
        Valid(
            input: "index.docker.io/library/ubuntu:latest", registry: "docker.io", repository: "library/ubuntu",
            tag: "latest", description: "docker.io/library/ubuntu:latest", familiar: "ubuntu:latest"),
        Valid(
            input: "library/ubuntu", registry: "docker.io", repository: "library/ubuntu",
            description: "docker.io/library/ubuntu", familiar: "ubuntu"),
        Valid(
            input: "org/app", registry: "docker.io", repository: "org/app",
            description: "docker.io/org/app", familiar: "org/app"),
        Valid(
            input: "library/a/b", registry: "docker.io", repository: "library/a/b",
            description: "docker.io/library/a/b", familiar: "library/a/b"),
        Valid(
            input: "localhost", registry: "docker.io", repository: "library/localhost",
            description: "docker.io/library/localhost", familiar: "localhost"),
        Valid(
            input: "localhost:5000", registry: "docker.io", repository: "library/localhost", tag: "5000",
            description: "docker.io/library/localhost:5000", familiar: "localhost:5000"),
        Valid(
            input: "localhost/a", registry: "localhost", repository: "a",
            description: "localhost/a", familiar: "localhost/a"),
        Valid(
            input: "localhost:5000/a", registry: "localhost:5000", repository: "a",
            description: "localhost:5000/a", familiar: "localhost:5000/a"),
        Valid(
            input: "[::1]:5000/a/b:t", registry: "[::1]:5000", repository: "a/b", tag: "t",
            description: "[::1]:5000/a/b:t", familiar: "[::1]:5000/a/b:t"),
        Valid(
            input: "[2001:db8::1]/repo", registry: "[2001:db8::1]", repository: "repo",
            description: "[2001:db8::1]/repo", familiar: "[2001:db8::1]/repo"),
        Valid(
            input: "127.0.0.1:5000/repo", registry: "127.0.0.1:5000", repository: "repo",
            description: "127.0.0.1:5000/repo", familiar: "127.0.0.1:5000/repo"),
        Valid(
            input: "ghcr.io/x", registry: "ghcr.io", repository: "x",
            description: "ghcr.io/x", familiar: "ghcr.io/x"),
        Valid(
            input: "a/b/c:tag@\(digestA)", registry: "docker.io", repository: "a/b/c", tag: "tag", digest: digestA,
            description: "docker.io/a/b/c:tag@\(digestA)", familiar: "a/b/c:tag@\(digestA)"),
        Valid(
            input: "registry.example.com/org/team/app@\(digestA)", registry: "registry.example.com",
            repository: "org/team/app", digest: digestA,
            description: "registry.example.com/org/team/app@\(digestA)",
            familiar: "registry.example.com/org/team/app@\(digestA)"),
        Valid(
            input: "test.com:5000/repo:tag", registry: "test.com:5000", repository: "repo", tag: "tag",
            description: "test.com:5000/repo:tag", familiar: "test.com:5000/repo:tag"),
        Valid(
            input: "sub-dom1.foo.com/bar/baz/quux", registry: "sub-dom1.foo.com", repository: "bar/baz/quux",
            description: "sub-dom1.foo.com/bar/baz/quux", familiar: "sub-dom1.foo.com/bar/baz/quux"),
        Valid(
            input: "xn--n3h.com/myimage:xn--n3h.com", registry: "xn--n3h.com", repository: "myimage",
            tag: "xn--n3h.com", description: "xn--n3h.com/myimage:xn--n3h.com",
            familiar: "xn--n3h.com/myimage:xn--n3h.com"),
        Valid(
            input: "Example.COM/a", registry: "Example.COM", repository: "a",
            description: "Example.COM/a", familiar: "Example.COM/a"),
        Valid(
            input: "a/b_c__d-e--f.g", registry: "docker.io", repository: "a/b_c__d-e--f.g",
            description: "docker.io/a/b_c__d-e--f.g", familiar: "a/b_c__d-e--f.g"),
        Valid(
            input: "foo:Tag_1.0-rc", registry: "docker.io", repository: "library/foo", tag: "Tag_1.0-rc",
            description: "docker.io/library/foo:Tag_1.0-rc", familiar: "foo:Tag_1.0-rc"),
        Valid(
            input: "foo:" + String(repeating: "t", count: 128), registry: "docker.io", repository: "library/foo",
            tag: String(repeating: "t", count: 128),
            description: "docker.io/library/foo:" + String(repeating: "t", count: 128),
            familiar: "foo:" + String(repeating: "t", count: 128)),
    ]

    @Test(arguments: valid)
    func parsesValidReferences(_ testCase: Valid) throws {
        let reference = try ImageReference(parsing: testCase.input)
        #expect(reference.registry == testCase.registry)
        #expect(reference.repository == testCase.repository)
        #expect(reference.tag == testCase.tag)
        #expect(reference.digest?.description == testCase.digest)
        #expect(reference.description == testCase.description)
        #expect(reference.familiarDescription == testCase.familiar)
        #expect(try ImageReference(parsing: reference.description) == reference, "description must re-parse to itself")
        #expect(try ImageReference(parsing: reference.familiarDescription) == reference)
    }

    struct Invalid: Sendable, CustomTestStringConvertible {
        let input: String
        let part: ImageReferenceError.Part
        var mentions: String = ""
        var testDescription: String { input.isEmpty ? "(empty)" : String(input.prefix(60)) }
    }

    static let invalid: [Invalid] = [
        Invalid(input: "", part: .reference, mentions: "empty"),
        Invalid(input: "Ubuntu", part: .repository, mentions: "repository names must be lowercase"),
        Invalid(input: "ghcr.io/Org/app", part: .repository, mentions: "use \"org/app\""),
        Invalid(input: "ubuntu:", part: .tag, mentions: "empty"),
        Invalid(input: "app:-bad", part: .tag, mentions: "must start with a letter, digit or underscore"),
        Invalid(input: "app:.bad", part: .tag),
        Invalid(input: "app:b@d!", part: .digest),
        Invalid(input: "app:ba+d", part: .tag),
        Invalid(input: "foo:" + String(repeating: "t", count: 129), part: .tag, mentions: "at most 128"),
        Invalid(input: "[fe80::1%eth0]", part: .repository),
        Invalid(input: "[fe80::1%eth0]:5000/a", part: .registry, mentions: "zone identifiers"),
        Invalid(input: "[::1/a", part: .registry, mentions: "no closing"),
        Invalid(input: "[]:5000/a", part: .registry),
        Invalid(input: "[::1]x/a", part: .registry),
        Invalid(input: "localhost:0/a", part: .registry, mentions: "1 to 65535"),
        Invalid(input: "localhost:65536/a", part: .registry, mentions: "\"65536\""),
        Invalid(input: "localhost:http/a", part: .registry),
        Invalid(input: "example.com:/a", part: .registry),
        Invalid(input: "ex_ample.com/a", part: .registry, mentions: "not a valid host name"),
        Invalid(input: "-example.com/a", part: .registry),
        Invalid(input: "example..com/a", part: .registry),
        Invalid(input: "a/b@sha256:abc", part: .digest, mentions: "expected 64"),
        Invalid(input: "a@md5:d41d8cd98f00b204e9800998ecf8427e", part: .digest, mentions: "md5"),
        Invalid(input: "a@\(fakeDigest())@\(fakeDigest())", part: .digest),
        Invalid(input: "-a/b", part: .repository, mentions: "starts with a separator"),
        Invalid(input: "a-/b", part: .repository, mentions: "ends with a separator"),
        Invalid(input: "a//b", part: .repository, mentions: "empty path component"),
        Invalid(input: "a/", part: .repository),
        Invalid(input: "/a", part: .repository),
        Invalid(input: "a..b", part: .repository, mentions: "separator \"..\""),
        Invalid(input: "a___b", part: .repository),
        Invalid(input: "a._b", part: .repository),
        Invalid(input: "aa/asdf$$^/aa", part: .repository, mentions: "other than"),
        Invalid(input: "a:b:c", part: .repository),
        Invalid(input: ":tag", part: .repository, mentions: "missing"),
        Invalid(input: "@\(fakeDigest())", part: .repository),
        Invalid(input: String(repeating: "ab", count: 32), part: .repository, mentions: "image ID"),
        Invalid(input: "a/" + String(repeating: "b", count: 254), part: .repository, mentions: "at most 255"),
    ]

    @Test(arguments: invalid)
    func rejectsInvalidReferences(_ testCase: Invalid) {
        #expect {
            try ImageReference(parsing: testCase.input)
        } throws: { error in
            guard let error = error as? ImageReferenceError else { return false }
            return error.input == testCase.input && error.part == testCase.part
                && (testCase.mentions.isEmpty || error.description.contains(testCase.mentions))
                && error.description.contains("\"\(testCase.input)\"")
        }
    }

    @Test func errorDescriptionNamesThePartAndTheRule() {
        #expect {
            try ImageReference(parsing: "app:-bad")
        } throws: { error in
            "\(error)" == "invalid tag in \"app:-bad\": a tag must start with a letter, digit or underscore and contain "
                + "only letters, digits, \"_\", \".\" and \"-\" (at most 128 characters)"
        }
    }

    @Test func nameAtTheLengthLimitIsAccepted() throws {
        let name = "ghcr.io/" + String(repeating: "b", count: 247)
        #expect(try ImageReference(parsing: name).name == name)
        let hub = String(repeating: "b", count: 255 - "docker.io/library/".count)
        #expect(try ImageReference(parsing: hub).name.utf8.count == 255)
    }

    /// Found by Fuzz/fuzz-image-reference: a short Docker Hub name of 250 characters parsed, but its normalised form
    /// `docker.io/library/…` (268 characters) did not parse back, and the component initialiser refused it.
    @Test func lengthLimitCountsTheNormalisedDockerHubName() throws {
        let short = String(repeating: "a", count: 250)
        #expect {
            try ImageReference(parsing: short)
        } throws: { error in
            guard let error = error as? ImageReferenceError else { return false }
            return error.part == .repository && error.description.contains("268 characters long; at most 255")
        }
        // One below the limit, every printed form parses back to the same reference.
        let reference = try ImageReference(parsing: String(repeating: "a", count: 237) + ":1.0")
        #expect(try ImageReference(parsing: reference.description) == reference)
        #expect(try ImageReference(parsing: reference.familiarDescription) == reference)
        #expect(try ImageReference(registry: reference.registry, repository: reference.repository, tag: "1.0") == reference)
    }

    @Test func apiHostAndDockerHub() throws {
        let hub = try ImageReference(parsing: "ubuntu")
        #expect(hub.isDockerHub)
        #expect(hub.apiHost == "registry-1.docker.io")
        #expect(hub.name == "docker.io/library/ubuntu")
        let local = try ImageReference(parsing: "localhost:5000/a")
        #expect(!local.isDockerHub)
        #expect(local.apiHost == "localhost:5000")
    }

    @Test func tagOrDigestIsWhatFollowsManifests() throws {
        #expect(try ImageReference(parsing: "a").tagOrDigest == "latest")
        #expect(try ImageReference(parsing: "a:1.0").tagOrDigest == "1.0")
        #expect(try ImageReference(parsing: "a:1.0@\(fakeDigest())").tagOrDigest == fakeDigest())
    }

    @Test func withTagAndWithDigestReplaceEachOther() throws {
        let pinned = try ImageReference(parsing: "ghcr.io/o/app:1@\(fakeDigest())")
        let retagged = try pinned.withTag("2")
        #expect(retagged.description == "ghcr.io/o/app:2")
        let digest = try Digest(parsing: fakeDigest("b"))
        #expect(retagged.withDigest(digest).description == "ghcr.io/o/app@\(digest)")
        #expect(throws: ImageReferenceError.self) { try pinned.withTag("no/slash") }
    }

    @Test func componentInitialiserNormalisesAndValidates() throws {
        let hub = try ImageReference(registry: "index.docker.io", repository: "ubuntu", tag: "22.04")
        #expect(hub.description == "docker.io/library/ubuntu:22.04")
        #expect(try ImageReference(registry: "localhost:5000", repository: "a/b").description == "localhost:5000/a/b")

        let cases: [(String, String, String?, ImageReferenceError.Part)] = [
            ("", "a", nil, .registry),
            ("host:99999", "a", nil, .registry),
            ("ghcr.io", "A", nil, .repository),
            ("ghcr.io", "", nil, .repository),
            ("ghcr.io", "a", "", .tag),
        ]
        for (registry, repository, tag, part) in cases {
            #expect {
                try ImageReference(registry: registry, repository: repository, tag: tag)
            } throws: { error in
                (error as? ImageReferenceError)?.part == part
            }
        }
    }

    @Test(arguments: ["latest", "1.0", "_x", "A-b.c_d", String(repeating: "x", count: 128)])
    func validTags(_ tag: String) throws {
        try ImageReference.validateTag(tag)
    }

    @Test(arguments: ["", "-x", ".x", "a b", "a/b", "a:b", "ä", String(repeating: "x", count: 129)])
    func invalidTags(_ tag: String) {
        #expect(throws: ImageReferenceError.self) { try ImageReference.validateTag(tag) }
    }

    /// Found by fuzz-image-reference: a Hub repository whose first component looks like a host kept no
    /// `docker.io/` in its short form, which then named the registry `libra.io`.
    @Test func familiarFormOfAHubRepositoryThatLooksLikeAHostKeepsDockerIO() throws {
        let reference = try ImageReference(parsing: "docker.io/libra.io/library/79")
        #expect(reference.familiarDescription == "docker.io/libra.io/library/79")
        #expect(try ImageReference(parsing: reference.familiarDescription) == reference)
        #expect(try ImageReference(parsing: "docker.io/team/app:1").familiarDescription == "team/app:1")
    }

    /// Found by fuzz-image-reference in CI emulation: `library/` followed by 64 hex characters parsed, but its short
    /// form (the bare hex, which reads as an image ID) did not parse back.
    @Test func familiarFormOfAHubNameThatLooksLikeAnImageIDKeepsLibrary() throws {
        let hex = String(repeating: "a", count: 64)
        let reference = try ImageReference(parsing: "library/\(hex)")
        #expect(reference.familiarDescription == "library/\(hex)")
        #expect(try ImageReference(parsing: reference.familiarDescription) == reference)
        #expect(try ImageReference(parsing: "library/\(hex.dropLast()):1").familiarDescription == "\(hex.dropLast()):1")
    }
}
