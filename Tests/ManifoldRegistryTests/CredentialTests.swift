import Foundation
import ManifoldHTTP
import ManifoldTestSupport
import Testing

@testable import ManifoldRegistry

@Suite struct DockerConfigTests {
    func write(_ json: String) throws -> (ScratchDirectory, DockerConfig) {
        let scratch = try ScratchDirectory(prefix: "docker-config")
        let file = scratch.file("config.json")
        try json.write(to: file, atomically: true, encoding: .utf8)
        return (scratch, DockerConfig(file: file))
    }

    @Test func readsAuthsInEveryKeyShape() async throws {
        let auth = Data("ci:s3cret:with:colons".utf8).base64EncodedString()
        let (scratch, config) = try write(
            """
            {"auths": {
              "https://index.docker.io/v1/": {"auth": "\(Data("hub:pw".utf8).base64EncodedString())"},
              "registry.local:5000": {"auth": "\(auth)"},
              "https://ghcr.io": {"identitytoken": "refresh-me"},
              "quay.io": {"registrytoken": "bearer-me"}
            }}
            """)
        defer { scratch.remove() }
        #expect(try await config.credential(for: "docker.io") == .basic(username: "hub", password: "pw"))
        #expect(try await config.credential(for: "registry.local:5000") == .basic(username: "ci", password: "s3cret:with:colons"))
        #expect(try await config.credential(for: "ghcr.io") == .identityToken("refresh-me"))
        #expect(try await config.credential(for: "quay.io") == .registryToken("bearer-me"))
        #expect(try await config.credential(for: "registry.local") == nil)
    }

    @Test func missingFileMeansNoCredentials() async throws {
        let config = DockerConfig(file: URL(fileURLWithPath: "/nonexistent/manifold/config.json"))
        #expect(try await config.credential(for: "docker.io") == nil)
    }

    @Test func invalidJSONIsAClearError() async throws {
        let (scratch, config) = try write("{not json")
        defer { scratch.remove() }
        await #expect { try await config.credential(for: "x") } throws: { error in
            "\(error)".contains("not a JSON object") && "\(error)".contains(config.file.path)
        }
    }

    @Test func storeKeepsOtherKeysAndIsOwnerOnly() async throws {
        let (scratch, config) = try write(#"{"auths": {"other.io": {"auth": "eDp5"}}, "proxies": {"default": {}}}"#)
        defer { scratch.remove() }
        try await config.store(username: "u", password: "p", for: "127.0.0.1:5000")
        #expect(try await config.credential(for: "127.0.0.1:5000") == .basic(username: "u", password: "p"))
        #expect(try await config.credential(for: "other.io") == .basic(username: "x", password: "y"))
        let document = try JSONSerialization.jsonObject(with: Data(contentsOf: config.file)) as? [String: Any]
        #expect(document?["proxies"] != nil)
        let permissions = try FileManager.default.attributesOfItem(atPath: config.file.path)[.posixPermissions] as? Int
        #expect(permissions == 0o600)
        #expect(try await config.remove(for: "127.0.0.1:5000"))
        #expect(try await config.credential(for: "127.0.0.1:5000") == nil)
        #expect(try await config.remove(for: "127.0.0.1:5000") == false)
    }

    @Test func dockerHubIsStoredUnderItsLegacyKey() async throws {
        let (scratch, config) = try write("{}")
        defer { scratch.remove() }
        try await config.store(username: "u", password: "p", for: "docker.io")
        let text = try String(contentsOf: config.file, encoding: .utf8)
        #expect(text.contains("https://index.docker.io/v1/"))
        #expect(try await config.credential(for: "index.docker.io") == .basic(username: "u", password: "p"))
    }

    @Test func defaultFileHonoursDockerConfig() {
        #expect(DockerConfig.defaultFile(environment: ["DOCKER_CONFIG": "/x/y"]).path == "/x/y/config.json")
        #expect(DockerConfig.defaultFile(environment: ["HOME": "/home/z"]).path == "/home/z/.docker/config.json")
    }

    /// A real credential helper process on PATH, speaking the docker-credential protocol.
    @Test func credentialHelpersAreRunForGetStoreErase() async throws {
        let scratch = try ScratchDirectory(prefix: "cred-helper")
        defer { scratch.remove() }
        let store = scratch.file("store")
        let helper = scratch.file("docker-credential-manifoldtest")
        try """
        #!/bin/sh
        read input
        case "$1" in
          get)
            if [ -f "\(store.path)" ] && grep -q "$input" "\(store.path)"; then cat "\(store.path)"
            elif [ "$input" = "token.example" ]; then echo '{"ServerURL":"token.example","Username":"<token>","Secret":"idt"}'
            else echo "credentials not found in native keychain"; exit 1; fi ;;
          store) echo "$input" > "\(store.path)" ;;
          erase) rm -f "\(store.path)" ;;
        esac
        """.write(to: helper, atomically: true, encoding: .utf8)
        try FileManager.default.setAttributes([.posixPermissions: 0o755], ofItemAtPath: helper.path)
        let (configScratch, plainConfig) = try write(
            #"{"credHelpers": {"token.example": "manifoldtest"}, "credsStore": "manifoldtest"}"#)
        defer { configScratch.remove() }
        let config = DockerConfig(file: plainConfig.file, helperSearchPath: [scratch.path])
        #expect(try await config.credential(for: "token.example") == .identityToken("idt"))
        #expect(try await config.credential(for: "unknown.example") == nil)
        try await config.store(username: "alice", password: "pw", for: "r.example:5000")
        #expect(try String(contentsOf: store, encoding: .utf8).contains("alice"))
        #expect(try await config.credential(for: "r.example:5000") == .basic(username: "alice", password: "pw"))
        // The password must not land in config.json when a store is configured.
        #expect(try !String(contentsOf: config.file, encoding: .utf8).contains("pw"))
        _ = try await config.remove(for: "r.example:5000")
        #expect(!FileManager.default.fileExists(atPath: store.path))
    }

    /// Found by fuzz-docker-config: two `credHelpers` keys for Docker Hub, one naming a helper and one not a
    /// string. Reading and storing used to pick whichever came first in dictionary order, so a password stored in
    /// `auths` could be read back through the helper. Both now choose the same entry, every time.
    @Test func severalHelperKeysForOneRegistryAreChosenTheSameWayForReadAndStore() async throws {
        let (scratch, written) = try write(
            #"{"credHelpers":{"registry-1.docker.io":"ecr-login","docker.io":5},"auths":{"index.docker.io":{"auth":"dTpw"}}}"#)
        let config = DockerConfig(file: written.file, helperSearchPath: [scratch.path])
        defer { scratch.remove() }
        for _ in 0..<20 {
            #expect(DockerConfig.credHelper(in: try config.load() ?? [:], for: "docker.io") == "ecr-login")
        }
        await #expect { try await config.credential(for: "docker.io") } throws: { error in
            "\(error)".contains("docker-credential-ecr-login")
        }
        await #expect { try await config.store(username: "fuzz", password: "pw", for: "docker.io") } throws: { error in
            "\(error)".contains("docker-credential-ecr-login")
        }
        #expect(try String(contentsOf: config.file, encoding: .utf8).contains("dTpw"))
    }

    @Test func missingHelperIsNamed() async throws {
        let (scratch, written) = try write(#"{"credsStore": "does-not-exist-anywhere"}"#)
        let config = DockerConfig(file: written.file, helperSearchPath: [scratch.path])
        defer { scratch.remove() }
        await #expect { try await config.credential(for: "x.io") } throws: { error in
            "\(error)".contains("docker-credential-does-not-exist-anywhere") && "\(error)".contains("not on PATH")
        }
    }

    /// A helper's stderr never mixes into the answer it prints on stdout; it shows up only in errors.
    @Test func helperStderrIsKeptOutOfTheAnswer() async throws {
        let scratch = try ScratchDirectory(prefix: "cred-helper-stderr")
        defer { scratch.remove() }
        let helper = scratch.file("docker-credential-noisy")
        try """
        #!/bin/sh
        read input
        echo "warning: keychain is slow" >&2
        if [ "$input" = "good.example" ]; then echo '{"Username":"u","Secret":"s"}'; exit 0; fi
        echo "backend exploded" >&2
        exit 3
        """.write(to: helper, atomically: true, encoding: .utf8)
        try FileManager.default.setAttributes([.posixPermissions: 0o755], ofItemAtPath: helper.path)
        let noisy = CredentialHelper(name: "noisy", searchPath: [scratch.path])
        #expect(try await noisy.get(serverURL: "good.example") == .basic(username: "u", password: "s"))
        await #expect { try await noisy.get(serverURL: "bad.example") } throws: { error in
            "\(error)".contains("backend exploded") && "\(error)".contains("docker-credential-noisy")
        }
    }

    @Test func credentialDescriptionHidesSecrets() {
        #expect(!"\(RegistryCredential.basic(username: "u", password: "hunter2"))".contains("hunter2"))
        #expect(!"\(RegistryCredential.identityToken("tok"))".contains("tok"))
    }
}

@Suite struct CertsDirectoryTests {
    @Test func readsCAsAndClientCertificateFromCertsD() throws {
        let scratch = try ScratchDirectory(prefix: "certsd")
        defer { scratch.remove() }
        let certs = try TestCertificates.generate(in: scratch.file("pki"))
        let hostDirectory = scratch.file("certs.d/127.0.0.1:5000")
        try FileManager.default.createDirectory(at: hostDirectory, withIntermediateDirectories: true)
        try FileManager.default.copyItem(at: certs.caCertificate, to: hostDirectory.appendingPathComponent("ca.crt"))
        try FileManager.default.copyItem(at: certs.clientCertificate, to: hostDirectory.appendingPathComponent("client.cert"))
        try FileManager.default.copyItem(at: certs.clientKey, to: hostDirectory.appendingPathComponent("client.key"))
        let configuration = RegistryConfiguration(certsDirectories: [scratch.file("certs.d")])
        let tls = try configuration.tls(for: "127.0.0.1:5000")
        let caText = try String(contentsOf: certs.caCertificate, encoding: .utf8)
        #expect(tls.caPEM?.contains(caText.trimmingCharacters(in: .whitespacesAndNewlines)) == true)
        #expect(tls.clientCertificateFile == hostDirectory.appendingPathComponent("client.cert").path)
        #expect(tls.clientKeyFile == hostDirectory.appendingPathComponent("client.key").path)
        #expect(try configuration.tls(for: "127.0.0.1:5001").caPEM == nil)
    }

    @Test func hostsMatchWhateverTheirCase() throws {
        let scratch = try ScratchDirectory(prefix: "certsd-case")
        defer { scratch.remove() }
        let certs = try TestCertificates.generate(in: scratch.file("pki"))
        let hostDirectory = scratch.file("certs.d/registry.local:5000")
        try FileManager.default.createDirectory(at: hostDirectory, withIntermediateDirectories: true)
        try FileManager.default.copyItem(at: certs.caCertificate, to: hostDirectory.appendingPathComponent("ca.crt"))
        let configuration = RegistryConfiguration(
            plainHTTPHosts: ["Plain.Local:5000"], caFiles: ["FLAG.local": [certs.caCertificate.path]],
            certsDirectories: [scratch.file("certs.d")], insecureSkipVerifyHosts: ["Skip.Local"])
        #expect(configuration.scheme(for: "plain.local:5000") == "http")
        #expect(configuration.scheme(for: "PLAIN.LOCAL:5000") == "http")
        #expect(configuration.scheme(for: "plain.local:5001") == "https")
        #expect(try configuration.tls(for: "skip.local").insecureSkipVerify)
        #expect(try configuration.tls(for: "flag.local").caPEM != nil)
        #expect(try configuration.tls(for: "Registry.Local:5000").caPEM != nil)
        #expect(try configuration.tls(for: "other.local").caPEM == nil)
    }

    /// A registry client's trust is what libcurl parses once per client: the system bundle's file where a host has no
    /// CA of its own, the bundle's text and the host's CAs where it has, nothing where nothing is checked; and the
    /// pool's clients are made with it.
    @Test func clientsTrustTheSystemBundleFileOrItAndTheirOwnCAs() throws {
        let scratch = try ScratchDirectory(prefix: "client-tls")
        defer { scratch.remove() }
        let certs = try TestCertificates.generate(in: scratch.file("pki"))
        let path = try #require(RegistryConfiguration.systemBundlePath(), "no system CA bundle (Debian: ca-certificates)")
        let system = try String(contentsOfFile: path, encoding: .utf8)
        let configuration = RegistryConfiguration(
            caFiles: ["private.local:5000": [certs.caCertificate.path]], certsDirectories: [],
            insecureSkipVerifyHosts: ["skip.local"])
        let publicTLS = try configuration.clientTLS(for: "registry.example.com")
        #expect(publicTLS.caFile == path)
        #expect(publicTLS.caPEM == nil)
        let privateTLS = try configuration.clientTLS(for: "private.local:5000")
        #expect(privateTLS.caFile == nil)
        let privateCA = try #require(privateTLS.caPEM)
        #expect(privateCA.hasPrefix(system))
        #expect(privateCA.contains(try String(contentsOf: certs.caCertificate, encoding: .utf8)))
        #expect(try configuration.clientTLS(for: "skip.local") == TLSConfiguration(insecureSkipVerify: true))
        // What a host configures itself is unchanged: a token server without settings of its own still shares the
        // registry's client (and trust).
        #expect(try configuration.tls(for: "registry.example.com") == TLSConfiguration())

        let pool = RegistryClientPool(configuration: configuration)
        defer { pool.shutdown() }
        #expect(try pool.client(for: "registry.example.com").http.configuration.tls == publicTLS)
        #expect(try pool.client(for: "private.local:5000").http.configuration.tls == privateTLS)
    }

    @Test func clientCertWithoutKeyIsAnError() throws {
        let scratch = try ScratchDirectory(prefix: "certsd")
        defer { scratch.remove() }
        let hostDirectory = scratch.file("d/h:1")
        try FileManager.default.createDirectory(at: hostDirectory, withIntermediateDirectories: true)
        try "x".write(to: hostDirectory.appendingPathComponent("client.cert"), atomically: true, encoding: .utf8)
        let configuration = RegistryConfiguration(certsDirectories: [scratch.file("d")])
        #expect { try configuration.tls(for: "h:1") } throws: { "\($0)".contains("client.key") }
    }

    @Test(arguments: ["nohost", "=file", "host="])
    func registryCAFlagNeedsHostAndFile(_ value: String) {
        #expect { try RegistryConfiguration.parseCAFlag(value) } throws: { "\($0)".contains("HOST[:PORT]=FILE") }
    }

    @Test func registryCAFlagNeedsAReadableFile() {
        #expect { try RegistryConfiguration.parseCAFlag("h:1=/nonexistent/ca.pem") } throws: {
            "\($0)".contains("/nonexistent/ca.pem")
        }
    }
}
