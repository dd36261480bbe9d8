import Foundation
import ManifoldCore
import Testing

@Suite struct RegistryPatternTests {
    @Test(arguments: [
        ("ghcr.io", "ghcr.io", true),
        ("ghcr.io", "ghcr.io:443", true),
        ("ghcr.io", "GHCR.IO", true),
        ("ghcr.io", "evil-ghcr.io", false),
        ("ghcr.io", "ghcr.io.evil.example", false),
        ("registry.local:5000", "registry.local:5000", true),
        ("registry.local:5000", "registry.local:5001", false),
        ("registry.local:5000", "registry.local", false),
        ("*.corp.example", "registry.corp.example", true),
        ("*.corp.example", "a.b.corp.example:8443", true),
        ("*.corp.example", "corp.example", false),
        ("*.corp.example", "evilcorp.example", false),
        ("docker.io", "index.docker.io", true),
        ("docker.io", "registry-1.docker.io", true),
        ("[::1]", "[::1]:5000", true),
        ("[::1]:5000", "[::1]:5001", false),
        ("127.0.0.1", "127.0.0.1:41234", true),
        ("127.0.0.1", "127.0.0.10", false),
    ])
    func registryPatternsMatchHostsAndPorts(pattern: String, registry: String, expected: Bool) throws {
        #expect(try RegistryPattern(parsing: pattern).matches(registry: registry) == expected)
    }

    @Test(arguments: [
        ("", "empty"),
        ("https://ghcr.io", "no scheme or path"),
        ("ghcr.io/team", "no scheme or path"),
        ("ghcr.io:0", "port \"0\""),
        ("ghcr.io:http", "port \"http\""),
        ("reg*.example", "wildcard is allowed only as the first label"),
        ("a.*.example", "wildcard is allowed only as the first label"),
        ("*", "wildcard is allowed only as the first label"),
        ("[::1", "bracketed IPv6"),
    ])
    func badRegistryPatternsNameTheProblem(input: String, mentions: String) {
        #expect {
            try RegistryPattern(parsing: input)
        } throws: { error in
            let text = "\(error)"
            return text.contains(mentions) && text.contains("expected HOST, HOST:PORT or *.DOMAIN")
        }
    }

    @Test(arguments: [
        ("registry.example.com/team/*", "registry.example.com/team/app:1.0", true),
        ("registry.example.com/team/*", "registry.example.com/team/sub/app:1.0", false),
        ("registry.example.com/team/*", "registry.example.com/teams/app", false),
        ("registry.example.com/team/*", "registry.example.com/other/app", false),
        ("registry.example.com/team/*", "other.example.com/team/app", false),
        ("registry.example.com/team/**", "registry.example.com/team/sub/app", true),
        ("registry.example.com/team/**", "registry.example.com/team", false),
        ("registry.example.com/team/app-*", "registry.example.com/team/app-web", true),
        ("registry.example.com/team/app-*", "registry.example.com/team/api", false),
        ("docker.io/library/*", "alpine:3.20", true),
        ("*.corp.example/ops/**", "reg.corp.example:5000/ops/tools/ci", true),
        ("127.0.0.1/e2e/*", "127.0.0.1:5000/e2e/app", true),
    ])
    func repositoryPatternsMatchRepositoriesNotTags(pattern: String, reference: String, expected: Bool) throws {
        #expect(try RepositoryPattern(parsing: pattern).matches(ImageReference(parsing: reference)) == expected)
    }

    @Test(arguments: [
        ("registry.example.com", "no registry and path"),
        ("registry.example.com/", "the path is empty"),
        ("registry.example.com/team/**/app", "** is allowed only as the last component"),
        ("registry.example.com/Team/*", "\"Team\" is not a repository path component"),
        ("registry.example.com/team//app", "\"\" is not a repository path component"),
    ])
    func badRepositoryPatternsNameTheProblem(input: String, mentions: String) {
        #expect {
            try RepositoryPattern(parsing: input)
        } throws: { error in
            "\(error)".contains(mentions)
        }
    }

    @Test func patternsRoundTripThroughJSON() throws {
        let patterns = [
            try RepositoryPattern(parsing: "ghcr.io/team/*"), try RepositoryPattern(parsing: "*.corp.example:5000/a/**"),
        ]
        let data = try JSONEncoder().encode(patterns)
        #expect(String(decoding: data, as: UTF8.self) == #"["ghcr.io\/team\/*","*.corp.example:5000\/a\/**"]"#)
        #expect(try JSONDecoder().decode([RepositoryPattern].self, from: data) == patterns)
        #expect(throws: DecodingError.self) { try JSONDecoder().decode([RegistryPattern].self, from: Data(#"["a/b"]"#.utf8)) }
    }

    @Test func aLongStarHeavyPatternStaysFast() throws {
        let pattern = try RepositoryPattern(parsing: "r.example/" + String(repeating: "a*", count: 100) + "b")
        let name = "r.example/" + String(repeating: "a", count: 200)
        #expect(!pattern.matches(try ImageReference(parsing: name)))
    }
}
