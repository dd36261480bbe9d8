import Crypto
import Foundation
import X509

/// The coordinator's own certificate authority: an ECDSA P-256 key and a self-signed CA certificate that
/// `manifold init` creates once and that signs the coordinator's TLS server certificate.
///
/// Agents trust the coordinator by pinning the CA's ``fingerprint`` (`manifold agent --ca-fingerprint sha256:…`),
/// so no public CA is involved and the server certificate can be re-issued for new host names without
/// touching the agents.
///
/// ```swift
/// let ca = try CertificateAuthority.generate()
/// let server = try ca.issueServerCertificate(hosts: ["coord.example", "192.0.2.10"])
/// print(ca.fingerprint)  // sha256:3f1c…
/// ```
public struct CertificateAuthority: Sendable {
    /// The self-signed CA certificate.
    public let certificate: Certificate
    /// The CA's signing key (always P-256).
    let privateKey: Certificate.PrivateKey
    /// The DER encoding of ``certificate``, kept for the fingerprint.
    private let certificateDER: [UInt8]

    private init(certificate: Certificate, privateKey: Certificate.PrivateKey) throws {
        self.certificate = certificate
        self.privateKey = privateKey
        self.certificateDER = try certificate.serializeAsPEM().derBytes
    }

    /// How far back `notValidBefore` is set, so that a host whose clock runs a little behind the
    /// coordinator's still accepts a freshly issued certificate.
    static let clockSkewAllowance: TimeInterval = 60 * 60

    /// Creates a new CA with a fresh P-256 key.
    ///
    /// - Parameters:
    ///   - commonName: The CA's subject common name.
    ///   - validityYears: How long the CA certificate is valid, in years of 365 days (1 to 100).
    ///   - now: The issuing time; injected for tests.
    public static func generate(
        commonName: String = "Manifold Coordinator CA",
        validityYears: Int = 10,
        now: Date = Date()
    ) throws -> CertificateAuthority {
        guard (1...100).contains(validityYears) else {
            throw CertificateAuthorityError.invalidValidity(
                "CA validity of \(validityYears) years is out of range: use 1 to 100 years")
        }
        guard !commonName.trimmingCharacters(in: .whitespaces).isEmpty else {
            throw CertificateAuthorityError.invalidCommonName(commonName)
        }
        let key = P256.Signing.PrivateKey()
        let privateKey = Certificate.PrivateKey(key)
        let publicKey = Certificate.PublicKey(key.publicKey)
        let name = try DistinguishedName {
            OrganizationName("Manifold")
            CommonName(commonName)
        }
        let certificate = try Certificate(
            version: .v3,
            serialNumber: Certificate.SerialNumber(),
            publicKey: publicKey,
            notValidBefore: now.addingTimeInterval(-clockSkewAllowance),
            notValidAfter: now.addingTimeInterval(TimeInterval(validityYears) * 365 * 86_400),
            issuer: name,
            subject: name,
            signatureAlgorithm: .ecdsaWithSHA256,
            extensions: try Certificate.Extensions {
                Critical(BasicConstraints.isCertificateAuthority(maxPathLength: 0))
                Critical(KeyUsage(digitalSignature: true, keyCertSign: true, cRLSign: true))
                SubjectKeyIdentifier(hash: publicKey)
            },
            issuerPrivateKey: privateKey
        )
        return try CertificateAuthority(certificate: certificate, privateKey: privateKey)
    }

    /// Issues a TLS server certificate for the coordinator, signed by this CA, with a fresh P-256 key.
    ///
    /// Every entry of `hosts` becomes a subject alternative name: IPv4 and IPv6 literals (an IPv6 literal
    /// may be written in brackets, `[fd00::1]`) as IP addresses, anything else as a DNS name (a leading
    /// `*.` wildcard is allowed). `localhost`, `127.0.0.1` and `::1` are always included so that local
    /// tools and health checks can connect.
    ///
    /// - Parameters:
    ///   - hosts: Names and addresses agents use to reach the coordinator.
    ///   - validityDays: How long the certificate is valid (1 to 825 days, the longest TLS clients accept).
    ///   - now: The issuing time; injected for tests.
    public func issueServerCertificate(
        hosts: [String],
        validityDays: Int = 825,
        now: Date = Date()
    ) throws -> (certificate: Certificate, privateKey: Certificate.PrivateKey) {
        guard (1...825).contains(validityDays) else {
            throw CertificateAuthorityError.invalidValidity(
                "server certificate validity of \(validityDays) days is out of range: use 1 to 825 days")
        }
        let names = try ServerNames(hosts: hosts)
        let key = P256.Signing.PrivateKey()
        let privateKey = Certificate.PrivateKey(key)
        let publicKey = Certificate.PublicKey(key.publicKey)
        let subject = try DistinguishedName {
            OrganizationName("Manifold")
            CommonName(names.commonName)
        }
        let authorityKeyIdentifier = AuthorityKeyIdentifier(
            keyIdentifier: SubjectKeyIdentifier(hash: certificate.publicKey).keyIdentifier)
        let certificate = try Certificate(
            version: .v3,
            serialNumber: Certificate.SerialNumber(),
            publicKey: publicKey,
            notValidBefore: now.addingTimeInterval(-Self.clockSkewAllowance),
            notValidAfter: now.addingTimeInterval(TimeInterval(validityDays) * 86_400),
            issuer: certificate.subject,
            subject: subject,
            signatureAlgorithm: .ecdsaWithSHA256,
            extensions: try Certificate.Extensions {
                Critical(BasicConstraints.notCertificateAuthority)
                Critical(KeyUsage(digitalSignature: true))
                try ExtendedKeyUsage([.serverAuth])
                SubjectAlternativeNames(names.generalNames)
                SubjectKeyIdentifier(hash: publicKey)
                authorityKeyIdentifier
            },
            issuerPrivateKey: self.privateKey
        )
        return (certificate, privateKey)
    }

    /// The CA certificate as PEM (`-----BEGIN CERTIFICATE-----`), what `pki/ca.crt` holds.
    public func certificatePEM() throws -> String {
        try certificate.serializeAsPEM().pemString + "\n"
    }

    /// The CA key as PKCS#8 PEM (`-----BEGIN PRIVATE KEY-----`), what `pki/ca.key` holds. Keep it secret.
    public func privateKeyPEM() throws -> String {
        try privateKey.serializeAsPEM().pemString + "\n"
    }

    /// Loads a CA written by ``certificatePEM()`` and ``privateKeyPEM()``.
    ///
    /// Checks that the certificate is a CA certificate, that the key is a P-256 key (SEC1 or PKCS#8 PEM) and
    /// that the key belongs to the certificate.
    public static func load(certificatePEM: String, privateKeyPEM: String) throws -> CertificateAuthority {
        let certificate: Certificate
        do {
            certificate = try Certificate(pemEncoded: certificatePEM)
        } catch {
            throw CertificateAuthorityError.invalidPEM(what: "CA certificate", reason: "\(error)")
        }
        let key: P256.Signing.PrivateKey
        do {
            key = try P256.Signing.PrivateKey(pemRepresentation: privateKeyPEM)
        } catch {
            throw CertificateAuthorityError.invalidPEM(
                what: "CA private key", reason: "not an ECDSA P-256 key in SEC1 or PKCS#8 PEM (\(error))")
        }
        guard case .isCertificateAuthority = try certificate.extensions.basicConstraints else {
            throw CertificateAuthorityError.notACertificateAuthority(subject: "\(certificate.subject)")
        }
        guard Certificate.PublicKey(key.publicKey) == certificate.publicKey else {
            throw CertificateAuthorityError.keyMismatch(subject: "\(certificate.subject)")
        }
        return try CertificateAuthority(certificate: certificate, privateKey: Certificate.PrivateKey(key))
    }

    /// SHA-256 over the DER certificate, "sha256:" + lowercase hex — what agents pin (`--ca-fingerprint`).
    public var fingerprint: String {
        Self.fingerprint(ofDER: certificateDER)
    }

    /// The ``fingerprint`` of the first certificate in a PEM document, e.g. the contents of `pki/ca.crt`.
    public static func fingerprint(ofPEM pem: String) throws -> String {
        do {
            return fingerprint(ofDER: try Certificate(pemEncoded: pem).serializeAsPEM().derBytes)
        } catch {
            throw CertificateAuthorityError.invalidPEM(what: "certificate", reason: "\(error)")
        }
    }

    private static func fingerprint(ofDER der: [UInt8]) -> String {
        "sha256:" + SHA256.hash(data: der).map { String(format: "%02x", $0) }.joined()
    }
}

extension Certificate.PrivateKey {
    /// PEM of this key, as written to `pki/*.key`: PKCS#8 (`-----BEGIN PRIVATE KEY-----`).
    public func pemString() throws -> String {
        try serializeAsPEM().pemString + "\n"
    }
}

extension Certificate {
    /// PEM of this certificate, as written to `pki/*.crt`.
    public func pemString() throws -> String {
        try serializeAsPEM().pemString + "\n"
    }
}

/// The subject alternative names of a server certificate, parsed and checked from `--host` values.
struct ServerNames {
    /// Names that are always present.
    static let implicitHosts = ["localhost", "127.0.0.1", "::1"]

    var dnsNames: [String] = []
    var ipAddresses: [(text: String, bytes: [UInt8])] = []

    init(hosts: [String]) throws {
        var seenDNS = Set<String>()
        var seenIP = Set<[UInt8]>()
        for raw in hosts + Self.implicitHosts {
            var host = raw.trimmingCharacters(in: .whitespaces)
            if host.hasPrefix("["), host.hasSuffix("]") {
                host = String(host.dropFirst().dropLast())
            }
            if let bytes = IPAddress.parse(host) {
                if seenIP.insert(bytes).inserted { ipAddresses.append((host, bytes)) }
                continue
            }
            let name = host.lowercased()
            if let problem = Self.problem(withDNSName: name) {
                throw CertificateAuthorityError.invalidHost(raw, reason: problem)
            }
            if seenDNS.insert(name).inserted { dnsNames.append(name) }
        }
    }

    /// The subject common name: the first name given by the caller, else `localhost`.
    var commonName: String {
        dnsNames.first ?? "localhost"
    }

    var generalNames: [GeneralName] {
        dnsNames.map { GeneralName.dnsName($0) } + ipAddresses.map { .ipAddress(.init(contentBytes: $0.bytes[...])) }
    }

    /// Why `name` is not a valid DNS name for a certificate, or nil if it is.
    static func problem(withDNSName name: String) -> String? {
        if name.isEmpty { return "a host name or IP address is required" }
        if name.utf8.count > 253 { return "a DNS name is at most 253 characters" }
        let labels = name.split(separator: ".", omittingEmptySubsequences: false)
        for (index, label) in labels.enumerated() {
            if label == "*" && index == 0 && labels.count > 2 { continue }
            if label.isEmpty { return "DNS names have no empty labels (check for doubled or trailing dots)" }
            if label.utf8.count > 63 { return "each DNS label is at most 63 characters" }
            let allowed = label.unicodeScalars.allSatisfy {
                ("a"..."z").contains($0) || ("0"..."9").contains($0) || $0 == "-"
            }
            if !allowed {
                return "use letters, digits, '-' and '.' (a DNS name), an IPv4 address or an IPv6 address"
            }
            if label.hasPrefix("-") || label.hasSuffix("-") { return "DNS labels do not start or end with '-'" }
        }
        return nil
    }
}

/// IP address literal parsing shared by certificate issuing and settings validation.
enum IPAddress {
    /// The network-order bytes of an IPv4 (4 bytes) or IPv6 (16 bytes) literal, or nil if `text` is neither.
    static func parse(_ text: String) -> [UInt8]? {
        if let v4 = parseIPv4(text) { return v4 }
        var storage = [UInt8](repeating: 0, count: 16)
        let ok = text.withCString { pointer in
            storage.withUnsafeMutableBytes { inet_pton(AF_INET6, pointer, $0.baseAddress) }
        }
        return ok == 1 ? storage : nil
    }

    /// Strict dotted-quad IPv4: four decimal parts 0–255 (inet_pton's own rules, without its platform quirks).
    static func parseIPv4(_ text: String) -> [UInt8]? {
        let parts = text.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 4 else { return nil }
        var bytes: [UInt8] = []
        for part in parts {
            guard (1...3).contains(part.count), part.allSatisfy(\.isASCII), part.allSatisfy(\.isNumber),
                let value = UInt8(part)
            else { return nil }
            bytes.append(value)
        }
        return bytes
    }
}

/// Why a certificate authority could not be created, loaded or used.
public enum CertificateAuthorityError: Error, CustomStringConvertible, Equatable {
    /// A `--host` value is neither a valid DNS name nor an IP address.
    case invalidHost(String, reason: String)
    /// A validity period is out of range; the message names the value and the range.
    case invalidValidity(String)
    /// The CA common name is empty.
    case invalidCommonName(String)
    /// A PEM document could not be read.
    case invalidPEM(what: String, reason: String)
    /// The loaded certificate is not a CA certificate (basicConstraints CA:TRUE missing).
    case notACertificateAuthority(subject: String)
    /// The loaded private key does not belong to the loaded certificate.
    case keyMismatch(subject: String)

    public var description: String {
        switch self {
        case .invalidHost(let host, let reason):
            "Invalid host \"\(host)\" for the server certificate: \(reason)."
        case .invalidValidity(let message):
            "Invalid validity: \(message)."
        case .invalidCommonName(let name):
            "Invalid CA common name \"\(name)\": it must not be empty."
        case .invalidPEM(let what, let reason):
            "Could not read the \(what) PEM: \(reason)."
        case .notACertificateAuthority(let subject):
            "The certificate \"\(subject)\" is not a CA certificate (no basicConstraints CA:TRUE); "
                + "use the ca.crt that `manifold init` wrote."
        case .keyMismatch(let subject):
            "The CA private key does not belong to the CA certificate \"\(subject)\"; "
                + "check that ca.crt and ca.key come from the same `manifold init`."
        }
    }
}
