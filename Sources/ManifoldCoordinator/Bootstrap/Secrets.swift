import Crypto
import Foundation

/// Bearer-token generation and hashing.
///
/// A token is shown to its owner once; the database stores only ``hash(_:)`` of it, and a presented token
/// is checked by hashing it and comparing with ``constantTimeEquals(_:_:)``.
///
/// ```swift
/// let token = Secrets.generate(prefix: "mfd_admin_")   // "mfd_admin_q3J…" — print once
/// let stored = Secrets.hash(token)                       // goes into the database
/// Secrets.constantTimeEquals(Secrets.hash(presented), stored)
/// ```
public enum Secrets {
    /// The number of random bytes in a generated secret (256 bits).
    public static let randomByteCount = 32

    /// A new random secret: prefix + 32 random bytes (SystemRandomNumberGenerator) base64url without padding,
    /// e.g. "mfd_admin_…", "mfd_join_…", "mfd_agent_…".
    ///
    /// The prefix makes a leaked token recognisable (for secret scanners and for humans); it carries no
    /// security.
    public static func generate(prefix: String) -> String {
        var generator = SystemRandomNumberGenerator()
        let bytes = (0..<randomByteCount).map { _ in UInt8.random(in: .min ... .max, using: &generator) }
        return prefix + base64URLEncoded(bytes)
    }

    /// SHA-256 hex of the secret — what the database stores. (Crypto.SHA256)
    public static func hash(_ secret: String) -> String {
        SHA256.hash(data: Data(secret.utf8)).map { String(format: "%02x", $0) }.joined()
    }

    /// Constant-time comparison of two hex hashes / byte strings.
    ///
    /// The time taken depends only on the lengths of the inputs, never on where they first differ, so an
    /// attacker cannot learn a stored hash byte by byte from response times.
    public static func constantTimeEquals(_ a: String, _ b: String) -> Bool {
        let left = Array(a.utf8)
        let right = Array(b.utf8)
        var difference = UInt8(truncatingIfNeeded: left.count ^ right.count)
        difference |= UInt8(left.count == right.count ? 0 : 1)
        let count = max(left.count, right.count)
        for index in 0..<count {
            let x = index < left.count ? left[index] : 0
            let y = index < right.count ? right[index] : 0
            difference |= x ^ y
        }
        return difference == 0
    }

    /// RFC 4648 §5 base64url without padding.
    static func base64URLEncoded(_ bytes: [UInt8]) -> String {
        Data(bytes).base64EncodedString()
            .replacingOccurrences(of: "+", with: "-")
            .replacingOccurrences(of: "/", with: "_")
            .replacingOccurrences(of: "=", with: "")
    }
}
