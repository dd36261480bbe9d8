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
    public init(name: String, role: Role) {
        self.name = name
        self.role = role
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
