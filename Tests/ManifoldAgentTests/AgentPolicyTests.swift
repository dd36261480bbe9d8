import Foundation
import ManifoldAPI
import ManifoldClient
import ManifoldCore
import ManifoldTestSupport
import Testing

@testable import ManifoldAgent

@Suite struct AgentPolicyTests {
    @Test(arguments: ["file:///etc", "/srv/repo", "./repo", "ext::sh -c evil", "-uhttps://x", "git://host/repo"])
    func localGitURLsAreRefused(url: String) {
        #expect(throws: AgentError.self) { try ContextFetcher.checkGitURL(url) }
    }

    @Test(arguments: ["https://github.com/org/repo.git", "ssh://git@host/repo", "git@github.com:org/repo.git"])
    func networkGitURLsAreAccepted(url: String) throws {
        try ContextFetcher.checkGitURL(url)
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
