import Foundation
import Testing

@testable import ManifoldHTTP

/// Address classification and the checks a `DestinationPolicy` makes before any connection.
@Suite struct DestinationPolicyTests {
    @Test(arguments: [
        ("8.8.8.8", AddressScope.public), ("127.0.0.1", .loopback), ("127.255.0.9", .loopback),
        ("169.254.169.254", .linkLocal), ("10.1.2.3", .private), ("172.16.0.1", .private), ("172.31.255.255", .private),
        ("172.32.0.1", .public), ("192.168.1.1", .private), ("100.100.100.200", .private), ("0.0.0.0", .unspecified),
        ("224.0.0.1", .multicast), ("255.255.255.255", .reserved), ("::1", .loopback), ("::", .unspecified),
        ("fe80::1", .linkLocal), ("[fe80::1%eth0]", .linkLocal), ("fd00:ec2::254", .private), ("fc00::1", .private),
        ("ff02::1", .multicast), ("2001:4860:4860::8888", .public), ("::ffff:169.254.169.254", .linkLocal),
        ("::ffff:127.0.0.1", .loopback), ("64:ff9b::10.0.0.1", .private), ("::ffff:8.8.8.8", .public),
    ])
    func addressesAreClassifiedByNetwork(_ text: String, _ expected: AddressScope) throws {
        let address = try #require(IPAddress(text), "\(text) should parse")
        #expect(address.scope == expected, "\(text)")
    }

    @Test func onlyNumericAddressesParse() {
        for text in ["registry.example", "1.2.3", "1.2.3.4.5", "256.1.1.1", "01234.1.1.1", "1::2::3", "12345::", "", ":"] {
            #expect(IPAddress(text) == nil, "\(text)")
        }
        #expect(IPAddress("2001:db8:0:0:0:0:0:1")?.description == "2001:db8::1")
        #expect(IPAddress("::ffff:10.0.0.1")?.description == "::ffff:a00:1")
    }

    /// A resolver that knows a few names and fails the test for any other lookup.
    static let resolver = HostResolver { host in
        let table = [
            "registry.example": ["203.0.113.10"], "metadata.test": ["169.254.169.254"], "mixed.test": ["8.8.8.8", "10.0.0.1"],
            "cdn.example": ["198.51.100.7"], "internal.registry": ["10.0.0.5"], "other.internal": ["10.9.9.9"],
        ]
        guard let addresses = table[host] else { throw HostResolutionError(host: host, message: "unknown in this test") }
        return addresses.compactMap(IPAddress.init)
    }

    func refusal(_ policy: DestinationPolicy, _ url: String) async -> String? {
        do {
            _ = try await policy.admit(URL(string: url)!)
            return nil
        } catch let error as HTTPClientError {
            guard case .destinationRefused = error else { return "unexpected \(error)" }
            return error.description
        } catch {
            return "unexpected \(error)"
        }
    }

    @Test func aPublicRegistryMaySendClientsOnlyToPublicHTTPSAddresses() async throws {
        let policy = DestinationPolicy(trustedOrigin: URL(string: "https://registry.example")!, resolver: Self.resolver)
        // Its own origin, and public HTTPS hosts, are allowed and pinned to what was checked.
        #expect(try await policy.admit(URL(string: "https://registry.example/v2/")!) == [IPAddress("203.0.113.10")!])
        #expect(try await policy.admit(URL(string: "https://cdn.example/blob?sig=1")!) == [IPAddress("198.51.100.7")!])

        let metadata = await refusal(policy, "https://metadata.test/latest/meta-data/")
        #expect(metadata?.contains("169.254.169.254, a link-local address") == true, "\(metadata ?? "admitted")")
        #expect(await refusal(policy, "https://169.254.169.254/latest")?.contains("link-local") == true)
        #expect(await refusal(policy, "https://[fe80::1]/token")?.contains("link-local") == true)
        #expect(await refusal(policy, "https://10.0.0.1/token")?.contains("private") == true)
        #expect(await refusal(policy, "https://127.0.0.1:9000/token")?.contains("loopback") == true)
        #expect(await refusal(policy, "https://[::ffff:127.0.0.1]/token")?.contains("loopback") == true)
        // One internal address among public ones is enough to refuse: the connection might use it.
        #expect(await refusal(policy, "https://mixed.test/token")?.contains("10.0.0.1") == true)
        #expect(await refusal(policy, "https://0.0.0.0/token")?.contains("never contacted") == true)
        // Leaving HTTPS is refused, wherever it leads.
        let plain = await refusal(policy, "http://cdn.example/token")
        #expect(plain?.contains("not HTTPS") == true, "\(plain ?? "admitted")")
        // So is a redirect to the registry's own host on another scheme (another origin).
        #expect(await refusal(policy, "http://registry.example/v2/")?.contains("not HTTPS") == true)
    }

    @Test func aRegistryOnAnInternalNetworkMayUseItsOwnKindOfNetwork() async throws {
        let policy = DestinationPolicy(
            trustedOrigin: URL(string: "http://internal.registry:5000")!, allowsPlainHTTP: true, resolver: Self.resolver)
        #expect(try await policy.admit(URL(string: "http://other.internal/token")!) == [IPAddress("10.9.9.9")!])
        // Its own network kind is private, not loopback or link-local.
        #expect(await refusal(policy, "http://127.0.0.1/token")?.contains("loopback") == true)
        #expect(await refusal(policy, "http://metadata.test/")?.contains("link-local") == true)

        let loopback = DestinationPolicy(trustedOrigin: URL(string: "https://127.0.0.1:5000")!, resolver: Self.resolver)
        #expect(try await loopback.admit(URL(string: "https://127.0.0.1:5001/token")!) == [])
        #expect(await refusal(loopback, "http://127.0.0.1:5001/token")?.contains("not HTTPS") == true)
    }

    @Test func aRegistryOnlyAProxyCanResolveIsStillReachedButWhatItPointsAtMustResolve() async throws {
        let policy = DestinationPolicy(trustedOrigin: URL(string: "https://proxied.example")!, resolver: Self.resolver)
        #expect(try await policy.admit(URL(string: "https://proxied.example/v2/")!) == [])
        await #expect {
            _ = try await policy.admit(URL(string: "https://unknown.example/token")!)
        } throws: { error in
            guard case HTTPClientError.connect(_, let message) = error else { return false }
            return message.contains("unknown.example could not be resolved")
        }
    }
}
