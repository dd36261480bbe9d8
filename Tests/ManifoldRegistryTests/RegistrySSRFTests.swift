import Foundation
import ManifoldCore
import ManifoldHTTP
import ManifoldTestSupport
import Testing

@testable import ManifoldRegistry

/// A registry (or whoever answers as one) must not be able to point Manifold's registry client at other hosts:
/// token realms and redirects are checked before any connection, credentials stay with the registry, and
/// what a foreign server sends back never reaches a message verbatim.
@Suite struct RegistrySSRFTests {
    let scratch: ScratchDirectory

    init() throws { scratch = try ScratchDirectory(prefix: "manifold-ssrf") }

    /// A client configuration for a hostile registry: plain HTTP unless it speaks TLS, a Basic credential,
    /// and optionally a notion of address kinds in which 127.0.0.1 stands in for a public address.
    func configuration(
        for registry: HostileRegistry, tls: TestCertificates? = nil, publicLoopback: Bool = false,
        resolver: HostResolver = .system
    ) -> RegistryConfiguration {
        var configuration = RegistryConfiguration(
            certsDirectories: [], credentials: StaticCredentials([registry.host: .basic(username: "u", password: "secret")]),
            retry: RetryPolicy(maxAttempts: 2, baseDelay: .milliseconds(10), maxDelay: .milliseconds(20)))
        if let tls {
            configuration.caFiles = [registry.host: [tls.caCertificate.path]]
        } else {
            configuration.plainHTTPHosts = [registry.host]
        }
        let stand = IPAddress("127.0.0.1")!
        let scope: @Sendable (IPAddress) -> AddressScope = { address in
            publicLoopback && address == stand ? .public : address.scope
        }
        configuration.destinations = DestinationRules(resolver: resolver, scope: scope)
        return configuration
    }

    static func refusal(_ error: any Error) -> String? {
        guard case RegistryError.transport(.destinationRefused, _) = error else { return nil }
        return "\(error)"
    }

    @Test func aRealmOnTheMetadataServiceIsRefusedBeforeAnyConnection() async throws {
        // metadata.test resolves (in this test) to the cloud metadata address; the check refuses it before curl
        // would resolve or connect anything.
        let registry = try HostileRegistry.start(
            .realm, target: "http://metadata.test/latest/meta-data/", logDirectory: scratch.url)
        let resolver = HostResolver { host in
            guard host == "metadata.test" else { throw HostResolutionError(host: host, message: "not in this test") }
            return [IPAddress("169.254.169.254")!]
        }
        let pool = RegistryClientPool(configuration: configuration(for: registry, resolver: resolver))
        defer { pool.shutdown() }
        let error = await #expect(throws: RegistryError.self) { try await pool.client(for: registry.host).ping() }
        let text = try #require(error.flatMap(Self.refusal), "\(String(describing: error))")
        #expect(text.contains("169.254.169.254, a link-local address"), "\(text)")
        #expect(text.contains("metadata.test"), "\(text)")
    }

    @Test func aRealmOnAnotherNetworkIsRefusedUnlessTheRegistryIsOnIt() async throws {
        let certificates = try TestCertificates.generate(in: scratch.file("certs"))
        let tokenSink = try HostileRegistry.start(.sink, address: "127.0.0.2", tls: certificates, logDirectory: scratch.url)
        let registry = try HostileRegistry.start(
            .realm, target: tokenSink.url("/token"), tls: certificates, logDirectory: scratch.url)

        // The registry "on the internet" (127.0.0.1 stands in for a public address): a loopback realm is refused.
        let guarded = RegistryClientPool(configuration: configuration(for: registry, tls: certificates, publicLoopback: true))
        defer { guarded.shutdown() }
        let error = await #expect(throws: RegistryError.self) { try await guarded.client(for: registry.host).ping() }
        let text = try #require(error.flatMap(Self.refusal), "\(String(describing: error))")
        #expect(text.contains("127.0.0.2, a loopback address"), "\(text)")
        #expect(tokenSink.requests().isEmpty)

        // The same realm for a registry on loopback itself is its own kind of network: it is asked for a token.
        let local = RegistryClientPool(configuration: configuration(for: registry, tls: certificates))
        defer { local.shutdown() }
        await #expect(throws: RegistryError.self) { try await local.client(for: registry.host).ping() }
        #expect(tokenSink.requests().map(\.path).contains { $0.hasPrefix("/token") })
    }

    @Test func aRealmThatLeavesHTTPSIsRefused() async throws {
        let certificates = try TestCertificates.generate(in: scratch.file("certs"))
        let tokenSink = try HostileRegistry.start(.sink, logDirectory: scratch.url)
        let registry = try HostileRegistry.start(
            .realm, target: tokenSink.url("/token"), tls: certificates, logDirectory: scratch.url)
        let pool = RegistryClientPool(configuration: configuration(for: registry, tls: certificates))
        defer { pool.shutdown() }
        let error = await #expect(throws: RegistryError.self) { try await pool.client(for: registry.host).ping() }
        let text = try #require(error.flatMap(Self.refusal), "\(String(describing: error))")
        #expect(text.contains("not HTTPS"), "\(text)")
        // The Basic credential the token request would have carried never left.
        #expect(tokenSink.requests().isEmpty)
    }

    @Test func redirectsAreCheckedAtEveryHop() async throws {
        let certificates = try TestCertificates.generate(in: scratch.file("certs"))
        let inner = try HostileRegistry.start(.sink, address: "127.0.0.2", tls: certificates, logDirectory: scratch.url)
        let plain = try HostileRegistry.start(.sink, logDirectory: scratch.url)
        for (target, expected) in [(inner.url(""), "127.0.0.2, a loopback address"), (plain.url(""), "not HTTPS")] {
            let registry = try HostileRegistry.start(.redirect, target: target, tls: certificates, logDirectory: scratch.url)
            let pool = RegistryClientPool(configuration: configuration(for: registry, tls: certificates, publicLoopback: true))
            defer { pool.shutdown() }
            let error = await #expect(throws: RegistryError.self) {
                _ = try await pool.client(for: registry.host).fetchManifest(repository: "team/app", reference: "1.0")
            }
            let text = try #require(error.flatMap(Self.refusal), "\(String(describing: error))")
            #expect(text.contains(expected), "\(text)")
            #expect(registry.requests().count == 1)
        }
        #expect(inner.requests().isEmpty)
        #expect(plain.requests().isEmpty)
    }

    @Test func credentialsNeverFollowAnUploadLocationOrLinkToAnotherHost() async throws {
        let elsewhere = try HostileRegistry.start(.sink, logDirectory: scratch.url)
        let registry = try HostileRegistry.start(
            .location, target: elsewhere.url("/upload/session?state=opaque"), logDirectory: scratch.url)
        let pool = RegistryClientPool(configuration: configuration(for: registry))
        defer { pool.shutdown() }
        let client = try pool.client(for: registry.host)
        let data = Data("layer".utf8)
        try await client.uploadBlob(repository: "team/app", digest: Digest.compute(.sha256, of: data), data: data)
        _ = try await client.listTags(repository: "team/app")

        // The registry got the credential (it asked for Basic authentication)…
        #expect(registry.requests().contains { $0.method == "POST" && $0.authorization })
        // …and the other host got the upload and the next page, but never the credential.
        let arrived = elsewhere.requests()
        #expect(arrived.contains { $0.method == "PUT" && $0.path.hasPrefix("/upload/session") })
        #expect(arrived.contains { $0.method == "GET" })
        #expect(!arrived.isEmpty && arrived.allSatisfy { !$0.authorization }, "\(arrived)")
    }

    @Test func aForeignErrorPageNeverReachesTheMessage() async throws {
        let registry = try HostileRegistry.start(.errorPage, bodyBytes: 300_000, logDirectory: scratch.url)
        let pool = RegistryClientPool(configuration: configuration(for: registry))
        defer { pool.shutdown() }
        let error = await #expect(throws: RegistryError.self) {
            _ = try await pool.client(for: registry.host).fetchManifest(repository: "team/app", reference: "1.0")
        }
        let text = "\(try #require(error))"
        #expect(!text.contains("INTERNAL-SECRET-PAGE") && !text.contains("<html"), "\(text)")
        #expect(text.contains("HTTP 500") && text.contains("text/html, 300000 bytes"), "\(text)")
    }

    @Test func registryErrorsAreQuotedSafely() throws {
        let hostile =
            #"{"errors": [{"code": "DENIED\u001b[2J", "message": "\u001b]0;owned\u0007line\nbreak \#(String(repeating: "x", count: 5000))"}]}"#
        let details = RegistryError.details(from: Data(hostile.utf8))
        let detail = try #require(details.first)
        #expect(detail.code == "DENIED[2J")
        let message = try #require(detail.message)
        #expect(!message.unicodeScalars.contains { $0.properties.generalCategory == .control })
        #expect(message.hasPrefix("]0;ownedline break xxx"))
        #expect(message.count == RegistryErrorDetail.maxMessageLength && message.hasSuffix("…"))
        let many = RegistryError.render((1...9).map { RegistryErrorDetail(code: "E\($0)") })
        #expect(many == "E1; E2; E3; E4; E5; and 4 more")
    }

    @Test func anUnlistedRegistryIsRefusedBeforeAnyConnection() throws {
        let sink = try HostileRegistry.start(.sink, logDirectory: scratch.url)
        var configuration = configuration(for: sink)
        configuration.allowedRegistries = [
            try RegistryPattern(parsing: "registry.example.com"), try RegistryPattern(parsing: "127.0.0.1:1"),
        ]
        let pool = RegistryClientPool(configuration: configuration)
        defer { pool.shutdown() }
        #expect {
            _ = try pool.client(for: sink.host)
        } throws: { error in
            let text = "\(error)"
            return text.contains("registry \(sink.host) is not in allowed_registries")
                && text.contains("registry.example.com, 127.0.0.1:1")
        }
        #expect(sink.requests().isEmpty)
        configuration.allowedRegistries = [try RegistryPattern(parsing: "127.0.0.1")]
        let allowing = RegistryClientPool(configuration: configuration)
        defer { allowing.shutdown() }
        #expect(throws: Never.self) { _ = try allowing.client(for: sink.host) }
    }
}
