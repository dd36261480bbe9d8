import Foundation

/// A registry an admin allows the coordinator to reach: `HOST`, `HOST:PORT` or `*.DOMAIN`.
///
/// Without a port the pattern covers every port of the host; `*.example.com` covers every host below
/// `example.com` (not `example.com` itself). Hosts compare case-insensitively; `docker.io` and
/// `index.docker.io` are the same registry (Docker Hub), whose API host `registry-1.docker.io` it covers too.
///
/// ```swift
/// let pattern = try RegistryPattern(parsing: "*.corp.example")
/// pattern.matches(registry: "registry.corp.example:5000")  // true
/// pattern.matches(registry: "corp.example")                // false
/// ```
public struct RegistryPattern: Hashable, Sendable, CustomStringConvertible, Codable {
    /// The host as written, lower-cased (`*.example.com`, `registry.local`, `[::1]`).
    public let host: String
    /// The port, when the pattern names one.
    public let port: Int?

    public var description: String { port.map { "\(host):\($0)" } ?? host }

    /// Parses `HOST`, `HOST:PORT`, `[IPV6]`, `[IPV6]:PORT` or `*.DOMAIN[:PORT]`.
    public init(parsing text: String) throws(RegistryPatternError) {
        let trimmed = text.trimmingCharacters(in: .whitespaces)
        func invalid(_ reason: String) -> RegistryPatternError {
            RegistryPatternError(input: text, reason: reason + "; expected HOST, HOST:PORT or *.DOMAIN, e.g. ghcr.io")
        }
        guard !trimmed.isEmpty else { throw invalid("the registry is empty") }
        guard !trimmed.contains("/") else { throw invalid("a registry has no scheme or path") }
        let (host, port) = Self.split(trimmed)
        guard !host.isEmpty else { throw invalid("the host is empty") }
        if let port {
            guard let number = Int(port), (1...65_535).contains(number) else {
                throw invalid("the port \"\(port)\" is not a number from 1 to 65535")
            }
            self.port = number
        } else {
            self.port = nil
        }
        let lowered = host.lowercased()
        if lowered.hasPrefix("[") {
            guard lowered.hasSuffix("]"), lowered.count > 2 else { throw invalid("\"\(host)\" is not a bracketed IPv6 address") }
        } else {
            let labels = lowered.split(separator: ".", omittingEmptySubsequences: false)
            for (index, label) in labels.enumerated() {
                if label == "*" && index == 0 && labels.count > 1 { continue }
                guard !label.isEmpty, label.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "-") })
                else {
                    throw invalid("\"\(host)\" is not a host name (a wildcard is allowed only as the first label, *.DOMAIN)")
                }
            }
        }
        self.host = Self.canonicalHost(lowered)
    }

    /// Whether `registry` (`HOST` or `HOST:PORT`, as in an image reference) is covered.
    public func matches(registry: String) -> Bool {
        let (rawHost, rawPort) = Self.split(registry)
        let candidate = Self.canonicalHost(rawHost.lowercased())
        if let port, Int(rawPort ?? "") != port { return false }
        if host.hasPrefix("*.") {
            return candidate.hasSuffix(String(host.dropFirst())) && candidate.count > host.count - 1
        }
        if host == ImageReference.dockerHubRegistry {
            return candidate == host || candidate == ImageReference.dockerHubAPIHost
        }
        return candidate == host
    }

    /// Whether any of `patterns` covers `registry`.
    public static func allows(_ patterns: [RegistryPattern], registry: String) -> Bool {
        patterns.contains { $0.matches(registry: registry) }
    }

    static func split(_ text: String) -> (host: String, port: String?) {
        if text.hasPrefix("["), let close = text.firstIndex(of: "]") {
            let host = String(text[...close])
            let rest = text[text.index(after: close)...]
            return rest.hasPrefix(":") ? (host, String(rest.dropFirst())) : (host, rest.isEmpty ? nil : String(rest))
        }
        if let colon = text.lastIndex(of: ":") {
            return (String(text[..<colon]), String(text[text.index(after: colon)...]))
        }
        return (text, nil)
    }

    static func canonicalHost(_ host: String) -> String {
        host == "index.docker.io" ? ImageReference.dockerHubRegistry : host
    }

    public init(from decoder: any Decoder) throws {
        let text = try decoder.singleValueContainer().decode(String.self)
        do { self = try RegistryPattern(parsing: text) } catch {
            throw DecodingError.dataCorrupted(.init(codingPath: decoder.codingPath, debugDescription: error.description))
        }
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(description)
    }
}

/// Repositories a token may build into: `REGISTRY/PATH` where `*` stands for any characters within one path
/// component and a final `/**` for any repository below the path (any depth).
///
/// ```swift
/// let scope = try RepositoryPattern(parsing: "registry.example.com/team/*")
/// scope.matches(try ImageReference(parsing: "registry.example.com/team/app:1.0"))      // true
/// scope.matches(try ImageReference(parsing: "registry.example.com/team/sub/app:1.0"))  // false
/// try RepositoryPattern(parsing: "registry.example.com/team/**")                        // any depth
/// ```
///
/// The registry part is a ``RegistryPattern``; short Docker Hub names are normalised as in image references
/// (`alpine` is `docker.io/library/alpine`).
public struct RepositoryPattern: Hashable, Sendable, CustomStringConvertible, Codable {
    public let registry: RegistryPattern
    /// The path pattern, e.g. `team/*` or `team/**`.
    public let path: String

    public var description: String { "\(registry)/\(path)" }

    public init(parsing text: String) throws(RegistryPatternError) {
        let trimmed = text.trimmingCharacters(in: .whitespaces)
        func invalid(_ reason: String) -> RegistryPatternError {
            RegistryPatternError(
                input: text, reason: reason + "; expected REGISTRY/PATH with * for one path component, e.g. ghcr.io/team/*")
        }
        guard let slash = trimmed.firstIndex(of: "/") else { throw invalid("no registry and path") }
        registry = try RegistryPattern(parsing: String(trimmed[..<slash]))
        let path = String(trimmed[trimmed.index(after: slash)...])
        let components = path.split(separator: "/", omittingEmptySubsequences: false)
        guard !path.isEmpty else { throw invalid("the path is empty") }
        for (index, component) in components.enumerated() {
            if component == "**" {
                guard index == components.count - 1 else { throw invalid("** is allowed only as the last component") }
                continue
            }
            guard !component.isEmpty,
                component.allSatisfy({
                    $0.isASCII && ($0.isLowercase || $0.isNumber || $0 == "*" || $0 == "." || $0 == "_" || $0 == "-")
                })
            else {
                throw invalid("\"\(component)\" is not a repository path component (lower-case letters, digits, . _ - and *)")
            }
        }
        self.path = path
    }

    /// Whether the reference's registry and repository are covered (tag and digest are ignored).
    public func matches(_ reference: ImageReference) -> Bool {
        guard registry.matches(registry: reference.registry) else { return false }
        let wanted = path.split(separator: "/", omittingEmptySubsequences: false)
        let actual = reference.repository.split(separator: "/", omittingEmptySubsequences: false)
        if wanted.last == "**" {
            let prefix = wanted.dropLast()
            guard actual.count > prefix.count else { return false }
            return zip(prefix, actual).allSatisfy { Self.glob(Array($0.utf8), Array($1.utf8)) }
        }
        guard wanted.count == actual.count else { return false }
        return zip(wanted, actual).allSatisfy { Self.glob(Array($0.utf8), Array($1.utf8)) }
    }

    /// Whether any of `patterns` covers the reference.
    public static func allows(_ patterns: [RepositoryPattern], _ reference: ImageReference) -> Bool {
        patterns.contains { $0.matches(reference) }
    }

    /// `*` matches any run of bytes (components never contain `/`). Iterative, linear in practice.
    static func glob(_ pattern: [UInt8], _ text: [UInt8]) -> Bool {
        var p = 0
        var t = 0
        var star: Int?
        var resume = 0
        while t < text.count {
            if p < pattern.count, pattern[p] == UInt8(ascii: "*") {
                star = p
                resume = t
                p += 1
            } else if p < pattern.count, pattern[p] == text[t] {
                p += 1
                t += 1
            } else if let star {
                p = star + 1
                resume += 1
                t = resume
            } else {
                return false
            }
        }
        while p < pattern.count, pattern[p] == UInt8(ascii: "*") { p += 1 }
        return p == pattern.count
    }

    public init(from decoder: any Decoder) throws {
        let text = try decoder.singleValueContainer().decode(String.self)
        do { self = try RepositoryPattern(parsing: text) } catch {
            throw DecodingError.dataCorrupted(.init(codingPath: decoder.codingPath, debugDescription: error.description))
        }
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(description)
    }
}

/// A registry or repository pattern that does not parse, with the input and what is expected.
public struct RegistryPatternError: Error, Equatable, Sendable, CustomStringConvertible {
    public let input: String
    public let reason: String
    public init(input: String, reason: String) {
        self.input = input
        self.reason = reason
    }
    public var description: String { "\"\(input)\": \(reason)" }
}
