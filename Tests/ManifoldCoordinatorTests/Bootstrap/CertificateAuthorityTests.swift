import Foundation
import Testing
import X509

@testable import ManifoldCoordinator

/// The CA and server certificates are checked by the real OpenSSL: verification, the printed extensions,
/// the fingerprint, and a TLS handshake between `openssl s_server` and `openssl s_client`.
@Suite("Certificate authority")
struct CertificateAuthorityTests {
    /// Writes a CA and a server certificate for `hosts` as ca.crt, server.crt and server.key.
    func writePKI(_ ca: CertificateAuthority, hosts: [String], in directory: URL) throws {
        let server = try ca.issueServerCertificate(hosts: hosts)
        try ca.certificatePEM().write(to: directory.appendingPathComponent("ca.crt"), atomically: true, encoding: .utf8)
        try server.certificate.pemString().write(
            to: directory.appendingPathComponent("server.crt"), atomically: true, encoding: .utf8)
        try server.privateKey.pemString().write(
            to: directory.appendingPathComponent("server.key"), atomically: true, encoding: .utf8)
    }

    @Test func openSSLVerifiesTheServerCertificateAndShowsTheNames() async throws {
        let scratch = try BootstrapScratchDirectory()
        defer { scratch.remove() }
        let ca = try CertificateAuthority.generate()
        try writePKI(ca, hosts: ["Coord.Example.com", "192.0.2.7", "[2001:db8::7]"], in: scratch.url)

        let verify = try await BootstrapProcess.run(
            ["openssl", "verify", "-CAfile", "ca.crt", "-purpose", "sslserver", "server.crt"], directory: scratch.url)
        #expect(verify.status == 0, "\(verify.output)\(verify.error)")
        #expect(verify.output.contains("server.crt: OK"))

        let text = try await BootstrapProcess.run(
            ["openssl", "x509", "-in", "server.crt", "-noout", "-text"], directory: scratch.url)
        #expect(text.status == 0, "\(text.error)")
        for name in ["DNS:coord.example.com", "DNS:localhost", "IP Address:192.0.2.7", "IP Address:127.0.0.1"] {
            #expect(text.output.contains(name), "missing \(name) in \(text.output)")
        }
        // OpenSSL prints IPv6 SANs expanded and in upper case.
        #expect(text.output.contains("IP Address:0:0:0:0:0:0:0:1"), "\(text.output)")
        #expect(text.output.contains("IP Address:2001:DB8:0:0:0:0:0:7"), "\(text.output)")
        #expect(text.output.contains("TLS Web Server Authentication"))
        #expect(text.output.contains("CA:FALSE"))
        #expect(text.output.contains("Digital Signature"))
        #expect(text.output.contains("X509v3 Subject Key Identifier"))
        #expect(text.output.contains("X509v3 Authority Key Identifier"))
        #expect(text.output.contains("ecdsa-with-SHA256"))
        #expect(text.output.contains("prime256v1") || text.output.contains("P-256"))

        let caText = try await BootstrapProcess.run(
            ["openssl", "x509", "-in", "ca.crt", "-noout", "-text"], directory: scratch.url)
        #expect(caText.output.contains("CA:TRUE"))
        #expect(caText.output.contains("Certificate Sign"))
    }

    @Test func fingerprintAgreesWithOpenSSL() async throws {
        let scratch = try BootstrapScratchDirectory()
        defer { scratch.remove() }
        let ca = try CertificateAuthority.generate()
        let pem = try ca.certificatePEM()
        try pem.write(to: scratch.url.appendingPathComponent("ca.crt"), atomically: true, encoding: .utf8)

        let result = try await BootstrapProcess.run(
            ["openssl", "x509", "-in", "ca.crt", "-noout", "-fingerprint", "-sha256"], directory: scratch.url)
        #expect(result.status == 0, "\(result.error)")
        // "sha256 Fingerprint=AB:CD:…" → "sha256:abcd…"
        let printed = try #require(result.output.split(separator: "=").last)
        let normalised =
            "sha256:"
            + printed.trimmingCharacters(in: .whitespacesAndNewlines)
            .replacingOccurrences(of: ":", with: "").lowercased()
        #expect(ca.fingerprint == normalised)
        #expect(try CertificateAuthority.fingerprint(ofPEM: pem) == normalised)
        #expect(ca.fingerprint.count == "sha256:".count + 64)
    }

    @Test func tlsHandshakeSucceedsWithTheCAAndTheHostName() async throws {
        let scratch = try BootstrapScratchDirectory()
        defer { scratch.remove() }
        let ca = try CertificateAuthority.generate()
        try writePKI(ca, hosts: ["coord.example"], in: scratch.url)

        // Port 0: the kernel picks a free port and s_server prints "ACCEPT 127.0.0.1:PORT".
        // -www: answer each connection on its own instead of relaying stdin, so s_server outlives a client.
        let server = try BootstrapProcess(
            [
                "openssl", "s_server", "-cert", "server.crt", "-key", "server.key", "-accept", "127.0.0.1:0", "-naccept", "5",
                "-www",
            ],
            directory: scratch.url)
        defer { server.stop() }
        // A crowded test machine can take a while to start openssl; the wait is generous.
        let port = await server.awaitOutput(timeout: 60) { output -> Int? in
            guard let line = output.split(separator: "\n").first(where: { $0.hasPrefix("ACCEPT") }),
                let port = line.split(separator: ":").last
            else { return nil }
            return Int(port.trimmingCharacters(in: .whitespaces))
        }
        let acceptedPort = try #require(port, "s_server did not start: \(server.output)\(server.error)")

        func connect(hostname: String) async throws -> BootstrapProcess.Result {
            try await BootstrapProcess.run(
                [
                    "openssl", "s_client", "-connect", "127.0.0.1:\(acceptedPort)", "-servername", hostname,
                    "-CAfile", "ca.crt", "-verify_return_error", "-verify_hostname", hostname,
                ],
                input: Data("Q\n".utf8), directory: scratch.url, timeout: 15)
        }

        for hostname in ["localhost", "coord.example"] {
            let client = try await connect(hostname: hostname)
            #expect(!client.timedOut)
            #expect(client.status == 0, "\(hostname): \(client.output)\(client.error)")
            #expect(client.output.contains("Verify return code: 0 (ok)"), "\(client.output)")
        }

        // A name the certificate does not carry must fail verification: the check above is not vacuous.
        let wrong = try await connect(hostname: "other.example")
        #expect(wrong.status != 0)
        #expect((wrong.output + wrong.error).contains("hostname mismatch"), "\(wrong.output)\(wrong.error)")
    }

    @Test func loadRoundTripsAndIssuesFromTheLoadedCA() throws {
        let ca = try CertificateAuthority.generate(commonName: "Test CA")
        let loaded = try CertificateAuthority.load(
            certificatePEM: try ca.certificatePEM(), privateKeyPEM: try ca.privateKeyPEM())
        #expect(loaded.certificate == ca.certificate)
        #expect(loaded.fingerprint == ca.fingerprint)
        let server = try loaded.issueServerCertificate(hosts: [])
        #expect(server.certificate.issuer == ca.certificate.subject)
        #expect(ca.certificate.publicKey.isValidSignature(server.certificate.signature, for: server.certificate))
    }

    @Test func loadRejectsAKeyFromAnotherCA() throws {
        let first = try CertificateAuthority.generate()
        let second = try CertificateAuthority.generate()
        #expect {
            try CertificateAuthority.load(
                certificatePEM: try first.certificatePEM(), privateKeyPEM: try second.privateKeyPEM())
        } throws: { error in
            "\(error)".contains("does not belong to the CA certificate")
        }
    }

    @Test func loadRejectsAServerCertificateAsCA() throws {
        let ca = try CertificateAuthority.generate()
        let server = try ca.issueServerCertificate(hosts: [])
        #expect {
            try CertificateAuthority.load(
                certificatePEM: try server.certificate.pemString(), privateKeyPEM: try server.privateKey.pemString())
        } throws: { error in
            "\(error)".contains("is not a CA certificate")
        }
    }

    @Test func loadRejectsGarbagePEM() throws {
        #expect(throws: CertificateAuthorityError.self) {
            try CertificateAuthority.load(certificatePEM: "not a certificate", privateKeyPEM: "nor a key")
        }
        #expect(throws: CertificateAuthorityError.self) {
            try CertificateAuthority.fingerprint(ofPEM: "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----")
        }
    }

    @Test(arguments: ["bad host", "-leading.example", "a..b", "", "fe80::1%eth0", "under_score.example"])
    func invalidHostsAreRejectedByName(_ host: String) throws {
        let ca = try CertificateAuthority.generate()
        #expect {
            try ca.issueServerCertificate(hosts: [host])
        } throws: { error in
            "\(error)".contains("Invalid host \"\(host)\"")
        }
    }

    @Test func namesAreNormalisedAndDeduplicated() throws {
        let names = try ServerNames(hosts: ["LOCALHOST", "127.0.0.1", "[::1]", "Build.Example", "*.agents.example"])
        #expect(names.dnsNames == ["localhost", "build.example", "*.agents.example"])
        #expect(names.ipAddresses.map(\.bytes.count) == [4, 16])
        #expect(names.commonName == "localhost")
    }

    @Test func validityIsCheckedAndApplied() throws {
        let now = Date(timeIntervalSince1970: 1_800_000_000)
        let ca = try CertificateAuthority.generate(validityYears: 10, now: now)
        #expect(ca.certificate.notValidAfter == now.addingTimeInterval(10 * 365 * 86_400))
        #expect(ca.certificate.notValidBefore < now)
        let server = try ca.issueServerCertificate(hosts: [], validityDays: 30, now: now)
        #expect(server.certificate.notValidAfter == now.addingTimeInterval(30 * 86_400))
        #expect(throws: CertificateAuthorityError.self) { try ca.issueServerCertificate(hosts: [], validityDays: 900) }
        #expect(throws: CertificateAuthorityError.self) { try CertificateAuthority.generate(validityYears: 0) }
    }
}
