import Foundation

/// One challenge from a `WWW-Authenticate` header (RFC 7235), e.g.
/// `Bearer realm="https://auth.example/token",service="registry",scope="repository:app:pull"`.
public struct AuthChallenge: Sendable, Hashable {
    /// The scheme, lowercased: `bearer` or `basic` in practice.
    public var scheme: String
    /// Parameters with lowercased names; quoted values are unescaped.
    public var parameters: [String: String]

    public init(scheme: String, parameters: [String: String] = [:]) {
        self.scheme = scheme.lowercased()
        self.parameters = parameters
    }

    public var realm: String? { parameters["realm"] }
    public var service: String? { parameters["service"] }
    /// The space-separated scopes the registry asked for.
    public var scopes: [String] { parameters["scope"].map { $0.split(separator: " ").map(String.init) } ?? [] }

    /// Parses every challenge in the given header values. A header may carry several challenges
    /// separated by commas, and a response may carry several headers; unparseable input yields no challenge.
    public static func parse(_ headerValues: [String]) -> [AuthChallenge] {
        headerValues.flatMap { parse(header: $0) }
    }

    /// Parses one header value.
    public static func parse(header: String) -> [AuthChallenge] {
        var scanner = ChallengeScanner(Array(header.utf8))
        var challenges: [AuthChallenge] = []
        while true {
            scanner.skip(whitespaceAndCommas: true)
            guard let scheme = scanner.token(), !scheme.isEmpty else { break }
            var challenge = AuthChallenge(scheme: scheme)
            // auth-params: name=value pairs separated by commas, until the next scheme token.
            while true {
                let mark = scanner.position
                scanner.skip(whitespaceAndCommas: true)
                guard let name = scanner.token(), !name.isEmpty else {
                    scanner.position = mark
                    break
                }
                scanner.skip(whitespaceAndCommas: false)
                guard scanner.consume(UInt8(ascii: "=")) else {
                    // Not a parameter: it is the next challenge's scheme (or token68 for this one).
                    scanner.position = mark
                    break
                }
                scanner.skip(whitespaceAndCommas: false)
                let value = scanner.quotedString() ?? scanner.token() ?? ""
                challenge.parameters[name.lowercased()] = value
            }
            challenges.append(challenge)
        }
        return challenges
    }
}

private struct ChallengeScanner {
    let bytes: [UInt8]
    var position = 0

    init(_ bytes: [UInt8]) { self.bytes = bytes }

    mutating func skip(whitespaceAndCommas: Bool) {
        while position < bytes.count {
            let byte = bytes[position]
            if byte == UInt8(ascii: " ") || byte == UInt8(ascii: "\t") || (whitespaceAndCommas && byte == UInt8(ascii: ",")) {
                position += 1
            } else {
                break
            }
        }
    }

    mutating func consume(_ byte: UInt8) -> Bool {
        guard position < bytes.count, bytes[position] == byte else { return false }
        position += 1
        return true
    }

    /// An RFC 7230 token (plus `/` so token68-like values survive).
    mutating func token() -> String? {
        let start = position
        while position < bytes.count, Self.isTokenByte(bytes[position]) { position += 1 }
        return position > start ? String(decoding: bytes[start..<position], as: UTF8.self) : nil
    }

    mutating func quotedString() -> String? {
        guard consume(UInt8(ascii: "\"")) else { return nil }
        var value: [UInt8] = []
        while position < bytes.count {
            let byte = bytes[position]
            position += 1
            if byte == UInt8(ascii: "\\"), position < bytes.count {
                value.append(bytes[position])
                position += 1
            } else if byte == UInt8(ascii: "\"") {
                return String(decoding: value, as: UTF8.self)
            } else {
                value.append(byte)
            }
        }
        return String(decoding: value, as: UTF8.self)  // unterminated: take what is there
    }

    static func isTokenByte(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "0")...UInt8(ascii: "9"):
            return true
        default:
            return "!#$%&'*+-.^_`|~/:".utf8.contains(byte)
        }
    }
}
