import Foundation

/// A content digest such as `sha256:9f86d081…`, the identity of every blob and manifest in a registry.
///
/// Only the algorithms registries accept for pushes are supported, and the hex part is kept in the
/// canonical lowercase form, so two equal digests always have equal strings.
///
/// ```swift
/// let digest = try Digest(parsing: "sha256:" + String(repeating: "a", count: 64))
/// let computed = Digest.compute(of: Data("hello".utf8))
/// ```
public struct Digest: Hashable, Sendable, Codable, CustomStringConvertible, LosslessStringConvertible {
    /// A digest algorithm from the OCI image-spec's registered set.
    public enum Algorithm: String, Sendable, Hashable, Codable, CaseIterable {
        case sha256
        case sha512

        /// The number of hex characters in an encoded digest of this algorithm.
        public var hexLength: Int {
            switch self {
            case .sha256: 64
            case .sha512: 128
            }
        }
    }

    /// The algorithm that produced ``hex``.
    public let algorithm: Algorithm
    /// The lowercase hex encoding of the hash, 64 characters for SHA-256 and 128 for SHA-512.
    public let hex: String

    /// Creates a digest from its parts, checking that `hex` is lowercase hex of the algorithm's length.
    public init(algorithm: Algorithm, hex: String) throws(DigestError) {
        try Self.validate(hex: hex, algorithm: algorithm, input: "\(algorithm.rawValue):\(hex)")
        self.algorithm = algorithm
        self.hex = hex
    }

    /// Parses `algorithm:hex`, for example `sha256:` followed by 64 lowercase hex characters.
    public init(parsing string: String) throws(DigestError) {
        guard let colon = string.firstIndex(of: ":") else {
            throw DigestError(
                input: string,
                reason: "missing \":\" between algorithm and hex; expected \"sha256:<64 hex characters>\"")
        }
        let name = String(string[..<colon])
        let hex = String(string[string.index(after: colon)...])
        guard let algorithm = Algorithm(rawValue: name) else {
            let known = Algorithm.allCases.map(\.rawValue).joined(separator: ", ")
            let reason =
                name.isEmpty
                ? "the algorithm before \":\" is empty; expected one of \(known)"
                : "unsupported algorithm \"\(name)\"; expected one of \(known)"
            throw DigestError(input: string, reason: reason)
        }
        try Self.validate(hex: hex, algorithm: algorithm, input: string)
        self.algorithm = algorithm
        self.hex = hex
    }

    /// Parses a digest string, returning `nil` when it is not valid; see ``init(parsing:)``.
    public init?(_ description: String) {
        guard let digest = try? Digest(parsing: description) else { return nil }
        self = digest
    }

    /// Creates a digest from hex produced by one of this module's hashers.
    init(uncheckedAlgorithm algorithm: Algorithm, hex: String) {
        self.algorithm = algorithm
        self.hex = hex
    }

    /// Hashes `data` with `algorithm`.
    public static func compute(_ algorithm: Algorithm = .sha256, of data: some DataProtocol) -> Digest {
        var hasher = DigestHasher(algorithm)
        hasher.update(contentsOf: data)
        return hasher.finalize()
    }

    /// Whether `data` hashes, with this digest's own algorithm, to this digest.
    public func matches(_ data: Data) -> Bool {
        Digest.compute(algorithm, of: data) == self
    }

    /// The canonical `algorithm:hex` form.
    public var description: String { "\(algorithm.rawValue):\(hex)" }

    /// The first 12 hex characters, as Docker shows image IDs.
    public var shortHex: String { String(hex.prefix(12)) }

    /// Decodes a digest from a single JSON string.
    public init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        let string = try container.decode(String.self)
        do {
            self = try Digest(parsing: string)
        } catch {
            throw DecodingError.dataCorruptedError(in: container, debugDescription: error.description)
        }
    }

    /// Encodes the digest as a single JSON string.
    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(description)
    }

    private static func validate(hex: String, algorithm: Algorithm, input: String) throws(DigestError) {
        let expected = "\(algorithm.hexLength) lowercase hex characters"
        if hex.isEmpty {
            throw DigestError(
                input: input, reason: "the hex part after \"\(algorithm.rawValue):\" is empty; expected \(expected)")
        }
        for scalar in hex.unicodeScalars {
            switch scalar {
            case "0"..."9", "a"..."f":
                continue
            case "A"..."F":
                throw DigestError(input: input, reason: "the hex part contains uppercase letters; expected \(expected)")
            default:
                throw DigestError(
                    input: input,
                    reason: "the hex part contains \"\(scalar)\", which is not a hex digit; expected \(expected)")
            }
        }
        if hex.utf8.count != algorithm.hexLength {
            throw DigestError(
                input: input,
                reason: "the hex part has \(hex.utf8.count) characters; expected \(expected) for \(algorithm.rawValue)")
        }
    }
}

/// A string that is not a valid ``Digest``.
public struct DigestError: Error, CustomStringConvertible, Equatable {
    /// The rejected string.
    public let input: String
    /// What is wrong with it and what a valid digest looks like.
    public let reason: String

    /// Creates an error for `input`.
    public init(input: String, reason: String) {
        self.input = input
        self.reason = reason
    }

    /// `invalid digest "<input>": <reason>`.
    public var description: String { "invalid digest \"\(input)\": \(reason)" }
}
