import Foundation

/// The JSON conventions of `/api/v1`: ISO 8601 dates, sorted keys, unescaped slashes.
public enum APICoding {
    public static func encoder() -> JSONEncoder {
        let encoder = JSONEncoder()
        encoder.dateEncodingStrategy = .iso8601
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return encoder
    }

    public static func decoder() -> JSONDecoder {
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .iso8601
        return decoder
    }
}

/// Requests of the users' API that are not build specs.
public struct CreateTokenRequest: Sendable, Hashable, Codable {
    public var name: String
    public var role: Role
    /// The pool a join token's agents join (join tokens only; default `default`).
    public var pool: String?
    /// Seconds until the token stops working; default 24 h for join tokens, never for the others.
    public var expiresInSeconds: Int?
    /// How many agents a join token may join (join tokens only; default 1).
    public var uses: Int?
    /// Repository patterns (`registry.example.com/team/*`) a submitter or viewer token is limited to; absent or
    /// empty: every repository of `allowed_registries`.
    public var repositories: [String]?

    public init(
        name: String, role: Role, pool: String? = nil, expiresInSeconds: Int? = nil, uses: Int? = nil,
        repositories: [String]? = nil
    ) {
        self.name = name
        self.role = role
        self.pool = pool
        self.expiresInSeconds = expiresInSeconds
        self.uses = uses
        self.repositories = repositories
    }
}

/// A pool an admin creates: the labels its agents carry and the platforms they may offer.
public struct CreatePoolRequest: Sendable, Hashable, Codable {
    public var name: String
    /// Imposed on every agent that joins the pool.
    public var labels: [String: String]
    /// `os/arch[/variant][:os.version]`; empty allows every platform.
    public var platforms: [String]

    public init(name: String, labels: [String: String] = [:], platforms: [String] = []) {
        self.name = name
        self.labels = labels
        self.platforms = platforms
    }
}

public struct CreatedToken: Sendable, Hashable, Codable {
    public var token: TokenView
    /// Shown once; the coordinator keeps only its hash.
    public var secret: String
    public init(token: TokenView, secret: String) {
        self.token = token
        self.secret = secret
    }
}

public struct RetryRequest: Sendable, Hashable, Codable {
    public var platform: String
    /// The build's secrets again, for a build that has secrets and finished: they were erased then. Exactly the
    /// names the build was submitted with.
    public var secrets: [String: String]?
    public init(platform: String, secrets: [String: String]? = nil) {
        self.platform = platform
        self.secrets = secrets
    }
}

public struct AgentStateRequest: Sendable, Hashable, Codable {
    public var state: AgentState
    public init(state: AgentState) { self.state = state }
}

public struct BuildList: Sendable, Hashable, Codable {
    public var builds: [BuildView]
    /// Pass as `before` to get the next (older) page; nil on the last page.
    public var next: String?
    public init(builds: [BuildView], next: String?) {
        self.builds = builds
        self.next = next
    }
}

public struct ContextUploadResponse: Sendable, Hashable, Codable {
    public var digest: String
    public var size: Int64
    public var existed: Bool
    public init(digest: String, size: Int64, existed: Bool) {
        self.digest = digest
        self.size = size
        self.existed = existed
    }
}
