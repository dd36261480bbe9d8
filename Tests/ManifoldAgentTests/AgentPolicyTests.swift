import Foundation
import ManifoldAPI
import ManifoldClient
import ManifoldCore
import ManifoldTestSupport
import Testing

@testable import ManifoldAgent

@Suite struct AgentPolicyTests {
    @Test(arguments: [
        "file:///etc", "/srv/repo", "./repo", "ext::sh -c evil", "-uhttps://x", "git://host/repo", "fd::17",
        "C:\\repos\\app", "C:/repos/app", "https://host/repo --upload-pack=x", "", "https://x\u{0}y",
    ])
    func localAndHelperGitURLsAreRefused(url: String) {
        let permissive = GitSourcePolicy(allowHTTP: true, sshHosts: [try! RegistryPattern(parsing: "*.example.com")])
        #expect(throws: AgentError.self) { try permissive.check(url) }
    }

    @Test func httpsIsAlwaysClonedAndHTTPOnlyWhenAllowed() throws {
        #expect(try GitSourcePolicy().check("https://github.com/org/repo.git") == .https)
        let refused = #expect(throws: AgentError.self) { try GitSourcePolicy().check("http://git.local/repo.git") }
        #expect(refused?.description.contains("allow_http_git") == true)
        #expect(try GitSourcePolicy(allowHTTP: true).check("http://git.local/repo.git") == .http)
        #expect(GitSourcePolicy.allowedProtocols(for: .https) == "https")
    }

    @Test(arguments: [
        "ssh://git@git.example.com/org/repo.git", "ssh://git.example.com:2222/repo", "git@git.example.com:org/repo.git",
        "git.example.com:org/repo.git", "git+ssh://git@git.example.com/repo", "GIT@GIT.EXAMPLE.COM:org/repo.git",
    ])
    func sshNeedsTheHostToBeAllowed(url: String) throws {
        let refused = #expect(throws: AgentError.self) { try GitSourcePolicy().check(url) }
        #expect(refused?.description.contains("allow_ssh_git_host") == true, "\(String(describing: refused))")
        let other = GitSourcePolicy(sshHosts: [try RegistryPattern(parsing: "github.com")])
        #expect(throws: AgentError.self) { try other.check(url) }
        let allowed = GitSourcePolicy(sshHosts: [try RegistryPattern(parsing: "git.example.com")])
        #expect(try allowed.check(url) == .ssh)
        let wildcard = GitSourcePolicy(sshHosts: [try RegistryPattern(parsing: "*.example.com")])
        #expect(try wildcard.check(url) == .ssh)
    }

    @Test func sshHostsComeFromSettings() throws {
        var settings = AgentSettings(stateDirectory: "/tmp/x")
        try settings.load(environment: ["MANIFOLD_AGENT_ALLOW_SSH_GIT_HOST": "git.example.com, *.corp.example"])
        #expect(settings.allowedSSHGitHosts.map(\.description) == ["git.example.com", "*.corp.example"])
        #expect(try settings.gitSourcePolicy.check("git@build.corp.example:team/app.git") == .ssh)
        #expect(throws: AgentSettingsError.self) {
            try settings.apply(key: "allow_ssh_git_host", value: "ssh://host/x", origin: "test")
        }
        #expect(throws: AgentSettingsError.self) { try settings.apply(key: "allow_http_git", value: "maybe", origin: "test") }
    }

    @Test func dockerfileOutsideTheContextIsRefused() throws {
        let spool = try LogSpool(
            file: FileManager.default.temporaryDirectory.appendingPathComponent(UUID().uuidString), secrets: [])
        for name in ["../Dockerfile", "/etc/passwd", "a/../../b", "C:\\x"] {
            let spec = JobSpec(
                buildId: "b", platform: Platform(os: "linux", architecture: "amd64"), image: "r/i", tag: "t",
                context: .git(url: "https://x", ref: "main"), dockerfile: name, buildArgs: [:], secretBuildArgs: [],
                labels: [:], timeoutSeconds: 10)
            let request = BuildRequest(
                spec: spec, contextDirectory: URL(fileURLWithPath: "/tmp/ctx"), workDirectory: URL(fileURLWithPath: "/tmp"),
                log: spool, stop: StopSignal(), grace: .seconds(1), environment: [:])
            #expect(throws: AgentError.self, "\(name)") { try request.dockerfilePath() }
        }
    }

    @Test func backoffGrowsToItsCapWithJitter() {
        var backoff = Backoff(initial: .milliseconds(100), cap: .seconds(2))
        let delays = (0..<10).map { _ in backoff.next() }
        #expect(delays[0] >= .milliseconds(50) && delays[0] <= .milliseconds(100))
        #expect(delays.allSatisfy { $0 <= .seconds(2) })
        #expect(delays[9] >= .seconds(1))
    }

    @Test func machineNamesMapToOCIPlatforms() {
        #expect(HostSystem.map(machine: "x86_64") == ("amd64", nil))
        #expect(HostSystem.map(machine: "aarch64") == ("arm64", "v8"))
        #expect(HostSystem.map(machine: "armv7l") == ("arm", "v7"))
    }

    @Test func caFingerprintMatchesOpenSSL() throws {
        let scratch = try ScratchDirectory(prefix: "fingerprint")
        defer { scratch.remove() }
        try runChecked(
            "openssl",
            [
                "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout",
                scratch.file("k").path, "-out", scratch.file("c.pem").path, "-subj", "/CN=test", "-days", "1",
            ])
        let openssl = try runChecked(
            "openssl", ["x509", "-in", scratch.file("c.pem").path, "-noout", "-fingerprint", "-sha256"])
        let hex = openssl.split(separator: "=").last!.replacingOccurrences(of: ":", with: "").lowercased()
            .trimmingCharacters(in: .whitespacesAndNewlines)
        let ours = try CoordinatorTrust.fingerprint(ofPEM: try Data(contentsOf: scratch.file("c.pem")))
        #expect(ours == "sha256:" + hex)
    }

    @Test func stateFilesAreOwnerOnly() throws {
        let scratch = try ScratchDirectory(prefix: "state")
        defer { scratch.remove() }
        let state = StateDirectory(path: scratch.file("agent").path)
        try state.prepare()
        try state.writePrivate(Data("secret".utf8), to: state.caFile)
        let directoryMode = try FileManager.default.attributesOfItem(atPath: state.url.path)[.posixPermissions]
        let fileMode = try FileManager.default.attributesOfItem(atPath: state.caFile.path)[.posixPermissions]
        #expect((directoryMode as? NSNumber)?.intValue == 0o700)
        #expect((fileMode as? NSNumber)?.intValue == 0o600)
    }
}
