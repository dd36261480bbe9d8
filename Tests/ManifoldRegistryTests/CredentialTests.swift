import Foundation
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

    @Test func readsAuthsInEveryKeyShape() throws {
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
        #expect(try config.credential(for: "docker.io") == .basic(username: "hub", password: "pw"))
        #expect(try config.credential(for: "registry.local:5000") == .basic(username: "ci", password: "s3cret:with:colons"))
        #expect(try config.credential(for: "ghcr.io") == .identityToken("refresh-me"))
        #expect(try config.credential(for: "quay.io") == .registryToken("bearer-me"))
        #expect(try config.credential(for: "registry.local") == nil)
    }

    @Test func missingFileMeansNoCredentials() throws {
        let config = DockerConfig(file: URL(fileURLWithPath: "/nonexistent/manifold/config.json"))
        #expect(try config.credential(for: "docker.io") == nil)
    }

    @Test func invalidJSONIsAClearError() throws {
        let (scratch, config) = try write("{not json")
        defer { scratch.remove() }
        #expect { try config.credential(for: "x") } throws: { error in
            "\(error)".contains("not a JSON object") && "\(error)".contains(config.file.path)
        }
    }

    @Test func storeKeepsOtherKeysAndIsOwnerOnly() throws {
        let (scratch, config) = try write(#"{"auths": {"other.io": {"auth": "eDp5"}}, "proxies": {"default": {}}}"#)
        defer { scratch.remove() }
        try config.store(username: "u", password: "p", for: "127.0.0.1:5000")
        #expect(try config.credential(for: "127.0.0.1:5000") == .basic(username: "u", password: "p"))
        #expect(try config.credential(for: "other.io") == .basic(username: "x", password: "y"))
        let document = try JSONSerialization.jsonObject(with: Data(contentsOf: config.file)) as? [String: Any]
        #expect(document?["proxies"] != nil)
        let permissions = try FileManager.default.attributesOfItem(atPath: config.file.path)[.posixPermissions] as? Int
        #expect(permissions == 0o600)
        #expect(try config.remove(for: "127.0.0.1:5000"))
        #expect(try config.credential(for: "127.0.0.1:5000") == nil)
        #expect(try config.remove(for: "127.0.0.1:5000") == false)
    }

    @Test func dockerHubIsStoredUnderItsLegacyKey() throws {
        let (scratch, config) = try write("{}")
        defer { scratch.remove() }
        try config.store(username: "u", password: "p", for: "docker.io")
        let text = try String(contentsOf: config.file, encoding: .utf8)
        #expect(text.contains("https://index.docker.io/v1/"))
        #expect(try config.credential(for: "index.docker.io") == .basic(username: "u", password: "p"))
    }

    @Test func defaultFileHonoursDockerConfig() {
        #expect(DockerConfig.defaultFile(environment: ["DOCKER_CONFIG": "/x/y"]).path == "/x/y/config.json")
        #expect(DockerConfig.defaultFile(environment: ["HOME": "/home/z"]).path == "/home/z/.docker/config.json")
    }

    /// A real credential helper process on PATH, speaking the docker-credential protocol.
    @Test func credentialHelpersAreRunForGetStoreErase() throws {
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
        #expect(try config.credential(for: "token.example") == .identityToken("idt"))
        #expect(try config.credential(for: "unknown.example") == nil)
        try config.store(username: "alice", password: "pw", for: "r.example:5000")
        #expect(try String(contentsOf: store, encoding: .utf8).contains("alice"))
        #expect(try config.credential(for: "r.example:5000") == .basic(username: "alice", password: "pw"))
        // The password must not land in config.json when a store is configured.
        #expect(try !String(contentsOf: config.file, encoding: .utf8).contains("pw"))
        try config.remove(for: "r.example:5000")
        #expect(!FileManager.default.fileExists(atPath: store.path))
    }

    @Test func missingHelperIsNamed() throws {
        let (scratch, written) = try write(#"{"credsStore": "does-not-exist-anywhere"}"#)
        let config = DockerConfig(file: written.file, helperSearchPath: [scratch.path])
        defer { scratch.remove() }
        #expect { try config.credential(for: "x.io") } throws: { error in
            "\(error)".contains("docker-credential-does-not-exist-anywhere") && "\(error)".contains("not on PATH")
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
