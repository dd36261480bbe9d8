import Foundation

/// Reads a token from a file or standard input, so it never has to be on a command line (where `ps`, shell
/// history and process-creation audit logs would keep it).
///
/// ```swift
/// let token = try TokenFile.read("/run/secrets/join-token")   // or "-" for standard input
/// ```
public enum TokenFile {
    /// The most bytes read: tokens are short, and a mistaken path to a big file should fail fast.
    public static let maxBytes = 64 * 1024

    /// The token in the file at `path`, or on standard input when `path` is `-`: the only non-blank line, with
    /// surrounding whitespace (and a Windows `\r`) removed.
    public static func read(_ path: String, flag: String = "--token-file") throws(TokenFileError) -> String {
        let source = path == "-" ? "standard input" : path
        let data: Data
        do {
            let handle = path == "-" ? FileHandle.standardInput : try FileHandle(forReadingFrom: URL(fileURLWithPath: path))
            defer { if path != "-" { try? handle.close() } }
            data = try handle.read(upToCount: maxBytes + 1) ?? Data()
        } catch {
            throw TokenFileError("\(flag): cannot read \(source): \(error.localizedDescription)")
        }
        return try token(in: data, source: source, flag: flag)
    }

    /// The token in `data` read from `source` (see ``read(_:flag:)``).
    public static func token(in data: Data, source: String, flag: String = "--token-file") throws(TokenFileError) -> String {
        guard data.count <= maxBytes else {
            throw TokenFileError("\(flag): \(source) is larger than \(maxBytes) bytes; it should hold only the token")
        }
        let lines = String(decoding: data, as: UTF8.self).split(whereSeparator: \.isNewline)
            .map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
        guard let token = lines.first else { throw TokenFileError("\(flag): \(source) is empty; it should hold the token") }
        guard lines.count == 1 else {
            throw TokenFileError("\(flag): \(source) has \(lines.count) non-empty lines; it should hold only the token")
        }
        guard !token.contains(where: { $0.isWhitespace }) else {
            throw TokenFileError("\(flag): the line in \(source) contains spaces; it should hold only the token")
        }
        return token
    }
}

/// Why a token could not be read from a file or standard input.
public struct TokenFileError: Error, CustomStringConvertible, Sendable, Equatable {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// The rule for coordinator URLs given to `join` and `login`: HTTPS, unless the user says `--insecure`.
public enum CoordinatorURLPolicy {
    /// Throws unless `url` is `https://`, or `http://` with `insecure` set.
    public static func check(_ url: URL, insecure: Bool) throws(InsecureCoordinatorURLError) {
        guard url.scheme?.lowercased() == "http", !insecure else { return }
        throw InsecureCoordinatorURLError(
            "\(url.absoluteString) is plain HTTP: the token would cross the network unencrypted and nothing proves "
                + "who answers. Use the coordinator's https:// URL, or add --insecure if plain HTTP is really "
                + "intended (a loopback address, or a network you trust end to end)")
    }
}

/// A coordinator URL refused because it is plain HTTP and `--insecure` was not given.
public struct InsecureCoordinatorURLError: Error, CustomStringConvertible, Sendable, Equatable {
    public let description: String
    public init(_ description: String) { self.description = description }
}
