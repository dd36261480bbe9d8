import Foundation

/// A parsed image reference such as `ghcr.io/org/app:1.0` or `ubuntu@sha256:…`, following the grammar of
/// `github.com/distribution/reference` and Docker's normalisation of short Docker Hub names.
///
/// ```swift
/// let ref = try ImageReference(parsing: "ubuntu:22.04")
/// ref.description          // "docker.io/library/ubuntu:22.04"
/// ref.familiarDescription  // "ubuntu:22.04"
/// ref.apiHost              // "registry-1.docker.io"
/// ```
public struct ImageReference: Hashable, Sendable, CustomStringConvertible {
    /// The registry host with optional port, e.g. `docker.io`, `localhost:5000`, `[::1]:5000`, `ghcr.io`.
    public var registry: String
    /// The repository path inside the registry, e.g. `library/ubuntu` or `org/team/app`.
    public var repository: String
    /// The tag, if the reference names one.
    public var tag: String?
    /// The digest, if the reference pins one.
    public var digest: Digest?

    /// The registry short names are resolved against.
    public static let dockerHubRegistry = "docker.io"
    /// The host that serves the registry API for Docker Hub.
    public static let dockerHubAPIHost = "registry-1.docker.io"
    /// The longest allowed name (registry, "/" and repository), as in distribution/reference.
    public static let maximumNameLength = 255

    /// Creates a reference from validated parts; `index.docker.io` becomes `docker.io` and a one-component
    /// Docker Hub repository gets the `library/` prefix.
    public init(registry: String, repository: String, tag: String? = nil, digest: Digest? = nil) throws(ImageReferenceError) {
        let input = Self.format(registry: registry, repository: repository, tag: tag, digest: digest)
        try Self.validateRegistry(registry, input: input)
        try Self.validateRepository(repository, input: input)
        if let tag { try Self.validateTag(tag, input: input) }
        self.init(validRegistry: registry, repository: repository, tag: tag, digest: digest)
        if name.utf8.count > Self.maximumNameLength {
            throw ImageReferenceError(
                input: input, part: .repository,
                reason: "the name \"\(name)\" is \(name.utf8.count) characters long; "
                    + "at most \(Self.maximumNameLength) are allowed")
        }
    }

    /// Parses `[registry/]repository[:tag][@digest]`.
    ///
    /// The first path component is the registry when it contains `.` or `:`, is `localhost`, or is a bracketed
    /// IPv6 address; otherwise the registry is Docker Hub. Both a tag and a digest may be given.
    public init(parsing string: String) throws(ImageReferenceError) {
        if string.isEmpty {
            throw ImageReferenceError(
                input: string, part: .reference,
                reason: "the reference is empty; expected [registry/]repository[:tag][@digest], e.g. ghcr.io/org/app:1.0")
        }
        if string.utf8.count == 64, string.utf8.allSatisfy(Self.isLowerHex) {
            throw ImageReferenceError(
                input: string, part: .repository,
                reason: "a 64-character hex string is an image ID, not a repository name; "
                    + "use repository@sha256:<hex> to pin a digest")
        }

        var remainder = Substring(string)
        var digest: Digest?
        if let at = remainder.firstIndex(of: "@") {
            let digestText = String(remainder[remainder.index(after: at)...])
            remainder = remainder[..<at]
            do {
                digest = try Digest(parsing: digestText)
            } catch {
                throw ImageReferenceError(input: string, part: .digest, reason: error.reason)
            }
        }

        var tag: String?
        let lastSlash = remainder.lastIndex(of: "/")
        let tagSearchStart = lastSlash.map { remainder.index(after: $0) } ?? remainder.startIndex
        if let colon = remainder[tagSearchStart...].lastIndex(of: ":") {
            tag = String(remainder[remainder.index(after: colon)...])
            remainder = remainder[..<colon]
        }

        let name = String(remainder)
        if name.isEmpty {
            throw ImageReferenceError(
                input: string, part: .repository,
                reason: "the repository name is missing; expected [registry/]repository[:tag][@digest]")
        }
        var registry = Self.dockerHubRegistry
        var repository = name
        if let slash = name.firstIndex(of: "/") {
            let first = name[..<slash]
            if Self.looksLikeRegistry(first) {
                registry = String(first)
                repository = String(name[name.index(after: slash)...])
                try Self.validateRegistry(registry, input: string)
            }
        }
        try Self.validateRepository(repository, input: string)
        if let tag { try Self.validateTag(tag, input: string) }
        self.init(validRegistry: registry, repository: repository, tag: tag, digest: digest)
        // The limit applies to the normalised name, as in distribution/reference: a short Docker Hub name counts
        // with its `docker.io/library/`, so whatever parses also prints back to a reference that parses.
        if self.name.utf8.count > Self.maximumNameLength {
            throw ImageReferenceError(
                input: string, part: .repository,
                reason: "the name \(self.name) is \(self.name.utf8.count) characters long; "
                    + "at most \(Self.maximumNameLength) are allowed")
        }
    }

    private init(validRegistry registry: String, repository: String, tag: String?, digest: Digest?) {
        let isHub = Self.isDockerHubHost(registry)
        self.registry = isHub ? Self.dockerHubRegistry : registry
        self.repository = isHub && !repository.contains("/") ? "library/" + repository : repository
        self.tag = tag
        self.digest = digest
    }

    /// The host that serves the registry API: `registry-1.docker.io` for Docker Hub, ``registry`` otherwise.
    public var apiHost: String { isDockerHub ? Self.dockerHubAPIHost : registry }

    /// Whether the reference points at Docker Hub.
    public var isDockerHub: Bool { Self.isDockerHubHost(registry) }

    /// `registry/repository`, e.g. `docker.io/library/ubuntu`.
    public var name: String { registry + "/" + repository }

    /// The fully normalised `name[:tag][@digest]`.
    public var description: String { Self.format(registry: registry, repository: repository, tag: tag, digest: digest) }

    /// The short form Docker prints: `ubuntu:22.04` or `org/app` for Docker Hub, ``description`` otherwise.
    public var familiarDescription: String {
        guard isDockerHub else { return description }
        // A Docker Hub repository whose first component looks like a registry (`libra.io/x`) keeps `docker.io/`,
        // or the short form would name another registry.
        let first = repository.split(separator: "/", maxSplits: 1).first.map(String.init) ?? repository
        if first.contains(".") || first.contains(":") || first == "localhost" { return description }
        var path = repository
        // `library/` stays before a 64-character hex name: alone, such a name reads as an image ID and is refused.
        let short = path.dropFirst("library/".count)
        let looksLikeAnID = short.utf8.count == 64 && short.utf8.allSatisfy(Self.isLowerHex)
        if path.hasPrefix("library/"), !short.contains("/"), !looksLikeAnID {
            path.removeFirst("library/".count)
        }
        return Self.append(tag: tag, digest: digest, to: path)
    }

    /// A copy naming `tag` instead of the current tag, with the digest dropped.
    public func withTag(_ tag: String) throws(ImageReferenceError) -> ImageReference {
        try Self.validateTag(tag, input: "\(name):\(tag)")
        var copy = self
        copy.tag = tag
        copy.digest = nil
        return copy
    }

    /// A copy pinned to `digest`, with the tag dropped.
    public func withDigest(_ digest: Digest) -> ImageReference {
        var copy = self
        copy.tag = nil
        copy.digest = digest
        return copy
    }

    /// What goes after `/v2/<repository>/manifests/`: the digest when pinned, else the tag, else `latest`.
    public var tagOrDigest: String { digest?.description ?? tag ?? "latest" }

    /// Checks `tag` against `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`.
    public static func validateTag(_ tag: String) throws(ImageReferenceError) {
        try validateTag(tag, input: tag)
    }

    // MARK: - Grammar

    private static func validateTag(_ tag: String, input: String) throws(ImageReferenceError) {
        let rule =
            "a tag must start with a letter, digit or underscore and contain only letters, digits, \"_\", \".\" and \"-\" (at most 128 characters)"
        if tag.isEmpty {
            throw ImageReferenceError(input: input, part: .tag, reason: "the tag after \":\" is empty; \(rule)")
        }
        let bytes = Array(tag.utf8)
        let valid =
            bytes.count <= 128 && isWordCharacter(bytes[0])
            && bytes.allSatisfy { isWordCharacter($0) || $0 == UInt8(ascii: ".") || $0 == UInt8(ascii: "-") }
        if !valid {
            throw ImageReferenceError(input: input, part: .tag, reason: rule)
        }
    }

    private static func validateRepository(_ repository: String, input: String) throws(ImageReferenceError) {
        if repository.isEmpty {
            throw ImageReferenceError(input: input, part: .repository, reason: "the repository path is empty")
        }
        if repository.utf8.contains(where: { (UInt8(ascii: "A")...UInt8(ascii: "Z")).contains($0) }) {
            throw ImageReferenceError(
                input: input, part: .repository,
                reason: "repository names must be lowercase; use \"\(repository.lowercased())\"")
        }
        for component in repository.split(separator: "/", omittingEmptySubsequences: false) {
            if let problem = pathComponentProblem(component) {
                throw ImageReferenceError(
                    input: input, part: .repository,
                    reason: "\(problem); each \"/\"-separated component must be lowercase letters and digits, "
                        + "optionally joined by \".\", \"_\", \"__\" or runs of \"-\"")
            }
        }
    }

    /// Describes why `component` is not `[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*`, or returns nil when it is.
    private static func pathComponentProblem(_ component: Substring) -> String? {
        if component.isEmpty { return "it has an empty path component (a leading, trailing or doubled \"/\")" }
        var separator: [UInt8] = []
        var sawAlphanumeric = false
        for byte in component.utf8 {
            if isLowerAlphanumeric(byte) {
                if !separator.isEmpty {
                    let isDashes = separator.allSatisfy { $0 == UInt8(ascii: "-") }
                    let allowed =
                        isDashes || separator == [UInt8(ascii: ".")] || separator == [UInt8(ascii: "_")]
                        || separator == [UInt8(ascii: "_"), UInt8(ascii: "_")]
                    if !allowed {
                        let text = String(decoding: separator, as: UTF8.self)
                        return "the component \"\(component)\" has the separator \"\(text)\""
                    }
                    separator.removeAll(keepingCapacity: true)
                }
                sawAlphanumeric = true
            } else if byte == UInt8(ascii: ".") || byte == UInt8(ascii: "_") || byte == UInt8(ascii: "-") {
                if !sawAlphanumeric { return "the component \"\(component)\" starts with a separator" }
                separator.append(byte)
            } else {
                return "the component \"\(component)\" contains a character other than a-z, 0-9, \".\", \"_\" and \"-\""
            }
        }
        if !separator.isEmpty { return "the component \"\(component)\" ends with a separator" }
        return nil
    }

    private static func validateRegistry(_ registry: String, input: String) throws(ImageReferenceError) {
        func fail(_ reason: String) -> ImageReferenceError {
            ImageReferenceError(input: input, part: .registry, reason: reason)
        }
        if registry.isEmpty { throw fail("the registry host is empty") }
        var host = Substring(registry)
        var port: Substring?
        if registry.hasPrefix("[") {
            guard let close = registry.firstIndex(of: "]") else {
                throw fail("the IPv6 address \"\(registry)\" has no closing \"]\"")
            }
            let address = registry[registry.index(after: registry.startIndex)..<close]
            let isIPv6 =
                !address.isEmpty && address.contains(":") && address.utf8.allSatisfy { isHex($0) || $0 == UInt8(ascii: ":") }
            if !isIPv6 {
                throw fail(
                    "\"\(registry[...close])\" is not a bracketed IPv6 address: only hex digits and \":\" may appear "
                        + "between \"[\" and \"]\" (zone identifiers such as %eth0 are not allowed)")
            }
            let rest = registry[registry.index(after: close)...]
            host = registry[...close]
            if !rest.isEmpty {
                guard rest.first == ":" else {
                    throw fail("unexpected \"\(rest)\" after the IPv6 address; expected \":<port>\" or nothing")
                }
                port = rest.dropFirst()
            }
        } else {
            if let colon = registry.firstIndex(of: ":") {
                host = registry[..<colon]
                port = registry[registry.index(after: colon)...]
            }
            for label in host.split(separator: ".", omittingEmptySubsequences: false) {
                let bytes = Array(label.utf8)
                let valid =
                    !bytes.isEmpty && isAlphanumeric(bytes.first!) && isAlphanumeric(bytes.last!)
                    && bytes.allSatisfy { isAlphanumeric($0) || $0 == UInt8(ascii: "-") }
                if !valid {
                    throw fail(
                        "\"\(host)\" is not a valid host name: each \".\"-separated label must be letters, digits and "
                            + "\"-\", starting and ending with a letter or digit")
                }
            }
        }
        if let port {
            let number = port.utf8.allSatisfy { (UInt8(ascii: "0")...UInt8(ascii: "9")).contains($0) } ? Int(port) : nil
            guard let number, (1...65535).contains(number) else {
                throw fail("the port \"\(port)\" of \"\(host)\" must be a number from 1 to 65535")
            }
        }
    }

    private static func looksLikeRegistry(_ component: Substring) -> Bool {
        component.contains(".") || component.contains(":") || component == "localhost" || component.hasPrefix("[")
            || component.utf8.contains(where: { (UInt8(ascii: "A")...UInt8(ascii: "Z")).contains($0) })
    }

    private static func isDockerHubHost(_ registry: String) -> Bool {
        let lowered = registry.lowercased()
        return lowered == dockerHubRegistry || lowered == "index.docker.io"
    }

    private static func format(registry: String, repository: String, tag: String?, digest: Digest?) -> String {
        append(tag: tag, digest: digest, to: registry + "/" + repository)
    }

    private static func append(tag: String?, digest: Digest?, to name: String) -> String {
        var result = name
        if let tag { result += ":" + tag }
        if let digest { result += "@" + digest.description }
        return result
    }

    private static func isLowerAlphanumeric(_ byte: UInt8) -> Bool {
        (UInt8(ascii: "a")...UInt8(ascii: "z")).contains(byte) || (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte)
    }

    private static func isAlphanumeric(_ byte: UInt8) -> Bool {
        isLowerAlphanumeric(byte) || (UInt8(ascii: "A")...UInt8(ascii: "Z")).contains(byte)
    }

    private static func isWordCharacter(_ byte: UInt8) -> Bool {
        isAlphanumeric(byte) || byte == UInt8(ascii: "_")
    }

    private static func isHex(_ byte: UInt8) -> Bool {
        (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte) || (UInt8(ascii: "a")...UInt8(ascii: "f")).contains(byte)
            || (UInt8(ascii: "A")...UInt8(ascii: "F")).contains(byte)
    }

    private static func isLowerHex(_ byte: UInt8) -> Bool {
        (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte) || (UInt8(ascii: "a")...UInt8(ascii: "f")).contains(byte)
    }
}

/// A string that is not a valid ``ImageReference``, naming the part that is wrong.
public struct ImageReferenceError: Error, CustomStringConvertible, Equatable {
    /// The part of a reference an error is about.
    public enum Part: String, Sendable {
        case reference, registry, repository, tag, digest
    }

    /// The rejected reference (or, for a component-wise initialiser, the reference those components spell).
    public let input: String
    /// Which part of the reference is wrong.
    public let part: Part
    /// What is wrong and what a valid value looks like.
    public let reason: String

    /// Creates an error about `part` of `input`.
    public init(input: String, part: Part, reason: String) {
        self.input = input
        self.part = part
        self.reason = reason
    }

    /// e.g. `invalid tag in "app:-bad": a tag must start with a letter, digit or underscore …`.
    public var description: String {
        switch part {
        case .reference: "invalid reference \"\(input)\": \(reason)"
        default: "invalid \(part.rawValue) in \"\(input)\": \(reason)"
        }
    }
}
