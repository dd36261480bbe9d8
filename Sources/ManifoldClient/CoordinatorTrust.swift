import Foundation
import ManifoldCore
import ManifoldHTTP

/// Trust on first contact, pinned: how an agent (`manifold-agent join`) and a user (`manifold login`) come to
/// trust a coordinator's private CA. The CA is fetched without verification and kept only if the SHA-256 of its
/// DER bytes is the fingerprint `manifold init` printed.
///
/// ```swift
/// let pem = try await CoordinatorTrust.fetchPinnedCA(from: url, fingerprint: "sha256:3b1f…", userAgent: "manifold")
/// ```
public enum CoordinatorTrust {
    /// `sha256:HEX` of the first certificate in `pem`, over its DER bytes.
    public static func fingerprint(ofPEM pem: Data) throws(CoordinatorTrustError) -> String {
        let text = String(decoding: pem, as: UTF8.self)
        guard let begin = text.range(of: "-----BEGIN CERTIFICATE-----"),
            let end = text.range(of: "-----END CERTIFICATE-----", range: begin.upperBound..<text.endIndex)
        else { throw CoordinatorTrustError("the coordinator's CA (GET /api/v1/ca.crt) is not a PEM certificate") }
        let base64 = text[begin.upperBound..<end.lowerBound].filter { !$0.isWhitespace }
        guard let der = Data(base64Encoded: String(base64)) else {
            throw CoordinatorTrustError("the coordinator's CA certificate is not valid base64")
        }
        return Digest.compute(.sha256, of: der).description
    }

    /// A fingerprint as users type it — `sha256:HEX`, or HEX with or without colons between bytes (as openssl
    /// prints it), any case — in the canonical `sha256:hex` form; nil if it is not one.
    public static func normalizedFingerprint(_ value: String) -> String? {
        let lowered = value.lowercased().replacingOccurrences(of: ":", with: "")
        let hex = lowered.hasPrefix("sha256") ? String(lowered.dropFirst(6)) : lowered
        guard hex.count == 64, hex.allSatisfy(\.isHexDigit) else { return nil }
        return "sha256:" + hex
    }

    /// Fetches the coordinator's CA certificate (PEM) and returns it only if its fingerprint is `fingerprint`.
    /// ``fetchPinnedCA(from:fingerprint:userAgent:)`` from the first of several replicas that answers. A CA that
    /// does not match the fingerprint stops at once: another replica is not asked to vouch for the same coordinator.
    public static func fetchPinnedCA(from urls: [URL], fingerprint expected: String, userAgent: String) async throws -> Data {
        var lastError: (any Error)?
        for url in urls {
            do {
                return try await fetchPinnedCA(from: url, fingerprint: expected, userAgent: userAgent)
            } catch let error as CoordinatorTrustError {
                throw error
            } catch {
                lastError = error
            }
        }
        throw lastError ?? CoordinatorTrustError("no coordinator URL was given")
    }

    public static func fetchPinnedCA(from url: URL, fingerprint expected: String, userAgent: String) async throws -> Data {
        let bootstrap = CoordinatorClient(
            baseURL: url, token: nil, tls: TLSConfiguration(insecureSkipVerify: true), userAgent: userAgent)
        let pem = try await bootstrap.caCertificate()
        let actual = try fingerprint(ofPEM: pem)
        guard actual == expected else {
            throw CoordinatorTrustError(
                "the coordinator's CA has fingerprint \(actual), not \(expected): refusing to trust it. Check the URL "
                    + "and the fingerprint `manifold init` printed; someone may be intercepting the connection")
        }
        return pem
    }
}

/// Why a coordinator's CA is not trusted.
public struct CoordinatorTrustError: Error, CustomStringConvertible, Sendable, Equatable {
    public let description: String
    public init(_ description: String) { self.description = description }
}
