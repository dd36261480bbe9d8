import Foundation
import ManifoldCore
import ManifoldTestSupport
import Testing

/// The real `manifold` binary against the real registry, as a user runs it.
@Suite struct CLITests {
    @Test func createThenInspectOverTLSWithBasicAuth() async throws {
        let registry = try TestRegistry.start(.basic)
        defer { registry.stop() }
        let scratch = try ScratchDirectory(prefix: "cli")
        defer { scratch.remove() }
        let images = try await pushImages(to: registry, repository: "cli/app")
        let ca = registry.certificates!.caCertificate.path
        let environment = ["DOCKER_CONFIG": scratch.path]

        let login = try await manifold(
            [
                "registry", "login", registry.host, "--username", registry.username!, "--password-stdin", "--registry-ca",
                "\(registry.host)=\(ca)",
            ],
            input: registry.password! + "\n", environment: environment)
        #expect(login.status == 0, "\(login.stderr)")
        #expect(login.stdout.contains("Login to \(registry.host) succeeded"))
        let permissions =
            try FileManager.default.attributesOfItem(atPath: scratch.file("config.json").path)[.posixPermissions] as? Int
        #expect(permissions == 0o600)

        let create = try await manifold(
            ["manifest", "create", "\(registry.host)/cli/app", "--tag", "1.0", "--tag", "latest"] + images
                + ["--platform", "\(images[2])=windows/amd64:10.0.20348", "--registry-ca", "\(registry.host)=\(ca)"],
            environment: environment)
        #expect(create.status == 0, "\(create.stderr)")
        #expect(create.stdout.contains("Published OCI image index sha256:"))
        #expect(create.stdout.contains("windows/amd64:10.0.20348.2227"))
        #expect(create.stdout.contains("→ \(registry.host)/cli/app:latest"))

        let inspect = try await manifold(
            ["manifest", "inspect", "\(registry.host)/cli/app:1.0", "--registry-ca", "\(registry.host)=\(ca)"],
            environment: environment)
        #expect(inspect.status == 0, "\(inspect.stderr)")
        #expect(inspect.stdout.contains("PLATFORM"))
        #expect(inspect.stdout.contains("windows/amd64 (10.0.20348.2227)"))
        #expect(inspect.stdout.contains("linux/arm64/v8"))

        let json = try await manifold(
            [
                "manifest", "inspect", "--output", "json", "\(registry.host)/cli/app:latest", "--registry-ca",
                "\(registry.host)=\(ca)",
            ],
            environment: environment)
        let document = try JSONSerialization.jsonObject(with: Data(json.stdout.utf8)) as? [String: Any]
        #expect((document?["manifests"] as? [Any])?.count == 3)
        #expect(document?["mediaType"] as? String == MediaType.ociImageIndex)

        let raw = try await manifold(
            ["manifest", "inspect", "--raw", "\(registry.host)/cli/app:1.0", "--registry-ca", "\(registry.host)=\(ca)"],
            environment: environment)
        #expect((try JSONSerialization.jsonObject(with: Data(raw.stdout.utf8)) as? [String: Any])?["manifests"] != nil)
        let skopeo = try await runCommand(
            "skopeo",
            [
                "inspect", "--raw", "--tls-verify=false", "--creds", "\(registry.username!):\(registry.password!)",
                "docker://\(registry.host)/cli/app:1.0",
            ])
        #expect(raw.stdout == skopeo.stdout)

        let logout = try await manifold(["registry", "logout", registry.host], environment: environment)
        #expect(logout.status == 0)
        let afterLogout = try await manifold(
            ["manifest", "inspect", "\(registry.host)/cli/app:1.0", "--registry-ca", "\(registry.host)=\(ca)"],
            environment: environment)
        #expect(afterLogout.status == 1)
        #expect(afterLogout.stderr.contains("manifold registry login \(registry.host)"))
    }

    @Test func plainHTTPOnlyWhenAskedFor() async throws {
        let registry = try TestRegistry.start(.http)
        defer { registry.stop() }
        let images = try await pushImages(to: registry, repository: "plain")
        let withoutFlag = try await manifold(["manifest", "create", "\(registry.host)/plain:1"] + images)
        #expect(withoutFlag.status == 1)
        #expect(withoutFlag.stderr.contains("https://\(registry.host)"))
        #expect(withoutFlag.stderr.contains("plain-HTTP registry"), "\(withoutFlag.stderr)")
        #expect(withoutFlag.stderr.contains("--insecure-registry \(registry.host)"), "\(withoutFlag.stderr)")
        let withFlag = try await manifold(
            ["manifest", "create", "\(registry.host)/plain:1", "--insecure-registry", registry.host] + images)
        #expect(withFlag.status == 0, "\(withFlag.stderr)")
    }

    @Test func loginAcceptsARegistryURLAndStoresItsHost() async throws {
        let registry = try TestRegistry.start(.http)
        defer { registry.stop() }
        let scratch = try ScratchDirectory(prefix: "cli-login-url")
        defer { scratch.remove() }
        let result = try await manifold(
            [
                "registry", "login", "https://\(registry.host)/", "--username", "ci", "--password-stdin",
                "--insecure-registry", registry.host,
            ],
            input: "pw\n", environment: ["DOCKER_CONFIG": scratch.path])
        #expect(result.status == 0, "\(result.stderr)")
        #expect(result.stdout.contains("Login to \(registry.host) succeeded"))
        let document = try JSONSerialization.jsonObject(with: Data(contentsOf: scratch.file("config.json"))) as? [String: Any]
        #expect((document?["auths"] as? [String: Any])?.keys.sorted() == [registry.host])

        let logout = try await manifold(
            ["registry", "logout", "http://\(registry.host)/"], environment: ["DOCKER_CONFIG": scratch.path])
        #expect(logout.status == 0, "\(logout.stderr)")
        #expect(logout.stdout.contains("Removed credentials for"))
    }

    @Test func wrongPasswordAtLoginFailsAndStoresNothing() async throws {
        let registry = try TestRegistry.start(.token)
        defer { registry.stop() }
        let scratch = try ScratchDirectory(prefix: "cli-login")
        defer { scratch.remove() }
        let result = try await manifold(
            [
                "registry", "login", registry.host, "--username", "manifold", "--password-stdin",
                "--registry-ca", "\(registry.host)=\(registry.certificates!.caCertificate.path)",
            ],
            input: "not-the-password\n", environment: ["DOCKER_CONFIG": scratch.path])
        #expect(result.status == 1)
        #expect(result.stderr.contains("rejected the credentials"))
        #expect(!result.stderr.contains("not-the-password"))
        #expect(!FileManager.default.fileExists(atPath: scratch.file("config.json").path))
    }

    @Test(arguments: [
        (["manifest", "create", "Bad/Upper", "--tag", "x", "a/b:c"], "repository"),
        (["manifest", "create", "r.local/app", "--tag", "-bad", "a/b:c"], "tag"),
        (["manifest", "create", "r.local/app", "a/b:c"], "--tag"),
        (["manifest", "create", "r.local/app", "--tag", "t"], "source"),
        (["manifest", "create", "r.local/app", "--tag", "t", "a/b:c", "--platform", "a/b:c=linux"], "os/arch"),
        (
            ["manifest", "create", "r.local/app", "--tag", "t", "a/b:c", "--platform", "x/y:z=linux/amd64"],
            "not one of the sources"
        ),
        (["manifest", "create", "r.local/app", "--tag", "t", "a/b@sha256:1234"], "digest"),
        (["manifest", "inspect", "registry.local/Upper/case"], "lowercase"),
        (["manifest", "create", "r.local/app", "--tag", "t", "a/b:c", "--registry-ca", "nofile"], "HOST[:PORT]=FILE"),
        (["nonsense"], "nonsense"),
    ])
    func usageErrorsExitTwoAndNameTheValue(_ arguments: [String], _ mention: String) async throws {
        let result = try await manifold(arguments)
        #expect(result.status == 2, "\(arguments): \(result.stderr)")
        #expect(result.stderr.contains(mention), "\(arguments): \(result.stderr)")
    }

    @Test func helpHasExamplesAndExitsZero() async throws {
        let result = try await manifold(["manifest", "create", "--help"])
        #expect(result.status == 0)
        #expect(result.stdout.contains("Examples:"))
        #expect(result.stdout.contains("--platform"))
    }
}

extension CLITests {
    @Test func loginForACoordinatorWritesIntoItsStateDirectory() async throws {
        let registry = try TestRegistry.start(.basic)
        defer { registry.stop() }
        let scratch = try ScratchDirectory(prefix: "cli-state-login")
        defer { scratch.remove() }
        let state = scratch.file("state")
        let result = try await manifold(
            [
                "registry", "login", registry.host, "--state-dir", state.path, "--username", registry.username!,
                "--password-stdin",
                "--registry-ca", "\(registry.host)=\(registry.certificates!.caCertificate.path)",
            ],
            input: registry.password! + "\n", environment: ["DOCKER_CONFIG": scratch.file("user").path])
        #expect(result.status == 0, "\(result.stderr)")
        let stored = try String(contentsOf: state.appendingPathComponent("registry/config.json"), encoding: .utf8)
        #expect(stored.contains(registry.host))
        #expect(!FileManager.default.fileExists(atPath: scratch.file("user/config.json").path))
    }
}

/// Pushes linux/amd64, linux/arm64/v8 and windows/amd64 OCI images with skopeo from an OCI layout, the way
/// an independent tool would; returns their references.
func pushImages(to registry: TestRegistry, repository: String) async throws -> [String] {
    let scratch = try ScratchDirectory(prefix: "images")
    defer { scratch.remove() }
    let images = [
        ("1.0-linux-amd64", try TestImage.make(os: "linux", architecture: "amd64", format: .oci, layerText: "amd64")),
        (
            "1.0-linux-arm64",
            try TestImage.make(os: "linux", architecture: "arm64", variant: "v8", format: .oci, layerText: "arm64")
        ),
        (
            "1.0-windows-amd64",
            try TestImage.make(
                os: "windows", architecture: "amd64", osVersion: "10.0.20348.2227", format: .oci, layerText: "windows")
        ),
    ]
    var references: [String] = []
    for (tag, image) in images {
        let layout = scratch.file(tag)
        try image.writeOCILayout(to: layout, tag: tag)
        var arguments = ["copy", "--quiet", "--preserve-digests"]
        switch registry.mode {
        case .http: arguments.append("--dest-tls-verify=false")
        default: arguments.append("--dest-cert-dir=\(try registry.certsDirectory().appendingPathComponent(registry.host).path)")
        }
        if let username = registry.username { arguments.append("--dest-creds=\(username):\(registry.password ?? "")") }
        arguments += ["oci:\(layout.path):\(tag)", "docker://\(registry.host)/\(repository):\(tag)"]
        try await runChecked("skopeo", arguments)
        references.append("\(registry.host)/\(repository):\(tag)")
    }
    return references
}
