import Crypto
import Foundation
import ManifoldAPI

/// The key that encrypts build secrets at rest: 256 random bits, kept in the coordinator's state directory
/// (`pki/secrets.key`, 0600), never in the database.
///
/// A build's secrets are sealed together with AES-256-GCM, the build id as associated data, so a sealed value
/// copied onto another build's row does not open.
///
/// ```swift
/// let key = SecretsKey.generate()
/// let sealed = try key.seal(["NPM_TOKEN": token], buildId: "bld_1")
/// let secrets = try key.open(sealed, buildId: "bld_1")
/// ```
public struct SecretsKey: Sendable {
    /// The size of the key in bytes.
    public static let byteCount = 32

    let key: SymmetricKey

    /// A key from its raw bytes (the key file's content); refuses anything but 32 bytes.
    public init(data: Data) throws(SecretsKeyError) {
        guard data.count == Self.byteCount else { throw .wrongSize(data.count) }
        key = SymmetricKey(data: data)
    }

    /// A new random key.
    public static func generate() -> SecretsKey {
        SecretsKey(key: SymmetricKey(size: .bits256))
    }

    private init(key: SymmetricKey) { self.key = key }

    /// The raw bytes, for the key file.
    public var data: Data { key.withUnsafeBytes { Data($0) } }

    /// `secrets` encrypted and authenticated for `buildId`: nonce, ciphertext and tag in one blob.
    public func seal(_ secrets: [String: String], buildId: String) throws -> Data {
        let plaintext = try JSONEncoder.sortedKeys.encode(secrets)
        guard let combined = try AES.GCM.seal(plaintext, using: key, authenticating: Self.associatedData(buildId)).combined
        else {
            throw SecretsKeyError.unreadable(buildId: buildId)
        }
        return combined
    }

    /// The secrets `seal` encrypted for `buildId`; throws when the key, the build id or a byte differs.
    public func open(_ sealed: Data, buildId: String) throws(SecretsKeyError) -> [String: String] {
        do {
            let box = try AES.GCM.SealedBox(combined: sealed)
            let plaintext = try AES.GCM.open(box, using: key, authenticating: Self.associatedData(buildId))
            return try JSONDecoder().decode([String: String].self, from: plaintext)
        } catch {
            throw .unreadable(buildId: buildId)
        }
    }

    static func associatedData(_ buildId: String) -> Data { Data("manifold build secrets v1 \(buildId)".utf8) }
}

/// Why a secrets key or a sealed value could not be used.
public enum SecretsKeyError: Error, CustomStringConvertible, Equatable, Sendable {
    /// The key file does not hold 32 bytes.
    case wrongSize(Int)
    /// The sealed secrets of a build do not open with this key (another key, another build, or changed bytes).
    case unreadable(buildId: String)

    public var description: String {
        switch self {
        case .wrongSize(let count):
            return "the secrets key holds \(count) bytes; it must hold \(SecretsKey.byteCount) random bytes"
        case .unreadable(let buildId):
            return "the secrets of build \(buildId) cannot be decrypted with this coordinator's secrets key "
                + "(pki/secrets.key was replaced, or the stored bytes were changed); submit the build again"
        }
    }
}

extension JSONEncoder {
    static var sortedKeys: JSONEncoder {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        return encoder
    }
}
