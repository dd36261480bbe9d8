import Foundation

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Reads and writes credentials in the docker CLI's `config.json`, so `docker login`,
/// `podman login --authfile` and `manifold registry login` share one file.
///
/// Lookup order for a host follows the docker CLI: `credHelpers[host]`, then `credsStore`,
/// then `auths[host]` (`auth` = base64 "user:password", or `identitytoken`, or `registrytoken`).
public struct DockerConfig: CredentialProvider {
    /// The file this configuration lives in.
    public let file: URL

    /// `$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`.
    public static func defaultFile(environment: [String: String] = ProcessInfo.processInfo.environment) -> URL {
        if let directory = environment["DOCKER_CONFIG"], !directory.isEmpty {
            return URL(fileURLWithPath: directory).appendingPathComponent("config.json")
        }
        let home = environment["HOME"] ?? environment["USERPROFILE"] ?? NSHomeDirectory()
        return URL(fileURLWithPath: home).appendingPathComponent(".docker/config.json")
    }

    /// Directories searched for `docker-credential-*` helpers; nil means `PATH`.
    public let helperSearchPath: [String]?

    public init(file: URL = DockerConfig.defaultFile(), helperSearchPath: [String]? = nil) {
        self.file = file
        self.helperSearchPath = helperSearchPath
    }

    func helper(_ name: String) -> CredentialHelper { CredentialHelper(name: name, searchPath: helperSearchPath) }

    /// The key under which Docker Hub credentials are stored.
    public static let dockerHubKey = "https://index.docker.io/v1/"

    /// Maps a registry host, or a key as found in `auths` (possibly with scheme and path), to a comparable host.
    public static func normalizedKey(_ key: String) -> String {
        var host = key
        if let range = host.range(of: "://") { host = String(host[range.upperBound...]) }
        if let slash = host.firstIndex(of: "/") { host = String(host[..<slash]) }
        host = host.lowercased()
        if host == "index.docker.io" || host == "registry-1.docker.io" || host == "docker.io" { return "docker.io" }
        return host
    }

    public func credential(for registry: String) async throws -> RegistryCredential? {
        guard let document = try load() else { return nil }
        let wanted = Self.normalizedKey(registry)
        if let name = Self.credHelper(in: document, for: registry) {
            return try await self.helper(name).get(serverURL: Self.serverURL(for: registry))
        }
        if let store = document["credsStore"] as? String, !store.isEmpty {
            if let credential = try await self.helper(store).get(serverURL: Self.serverURL(for: registry)) {
                return credential
            }
        }
        guard let auths = document["auths"] as? [String: Any] else { return nil }
        let exact = Self.configKey(for: registry)
        let keys = auths.keys.filter { Self.normalizedKey($0) == wanted }
            .sorted { ($0 == exact ? 0 : 1, $0) < ($1 == exact ? 0 : 1, $1) }
        for key in keys {
            guard let entry = auths[key] as? [String: Any] else { continue }
            if let token = entry["identitytoken"] as? String, !token.isEmpty { return .identityToken(token) }
            if let token = entry["registrytoken"] as? String, !token.isEmpty { return .registryToken(token) }
            if let auth = entry["auth"] as? String, !auth.isEmpty {
                guard let decoded = Data(base64Encoded: auth).map({ String(decoding: $0, as: UTF8.self) }),
                    let colon = decoded.firstIndex(of: ":")
                else {
                    throw DockerConfigError(
                        file: file, reason: "the \"auth\" value for \(key) is not base64 of \"user:password\"")
                }
                return .basic(username: String(decoded[..<colon]), password: String(decoded[decoded.index(after: colon)...]))
            }
            if let username = entry["username"] as? String, let password = entry["password"] as? String {
                return .basic(username: username, password: password)
            }
        }
        return nil
    }

    /// Stores a username and password for `registry`, through the configured credential store when
    /// there is one, else base64-encoded in `auths`. Other keys in the file are preserved.
    public func store(username: String, password: String, for registry: String) async throws {
        var document = try load() ?? [:]
        let key = Self.configKey(for: registry)
        if let helper = Self.helperName(in: document, for: registry) {
            try await self.helper(helper).store(serverURL: Self.serverURL(for: registry), username: username, secret: password)
            var auths = document["auths"] as? [String: Any] ?? [:]
            auths[key] = [String: Any]()
            document["auths"] = auths
        } else {
            var auths = document["auths"] as? [String: Any] ?? [:]
            for existing in auths.keys where Self.normalizedKey(existing) == Self.normalizedKey(registry) {
                auths[existing] = nil
            }
            auths[key] = ["auth": Data("\(username):\(password)".utf8).base64EncodedString()]
            document["auths"] = auths
        }
        try save(document)
    }

    /// Removes stored credentials for `registry`; returns whether there were any.
    @discardableResult
    public func remove(for registry: String) async throws -> Bool {
        guard var document = try load() else { return false }
        var removed = false
        if let helper = Self.helperName(in: document, for: registry) {
            removed = (try? await self.helper(helper).erase(serverURL: Self.serverURL(for: registry))) != nil
        }
        if var auths = document["auths"] as? [String: Any] {
            for key in auths.keys where Self.normalizedKey(key) == Self.normalizedKey(registry) {
                auths[key] = nil
                removed = true
            }
            document["auths"] = auths
        }
        try save(document)
        return removed
    }

    static func configKey(for registry: String) -> String {
        normalizedKey(registry) == "docker.io" ? dockerHubKey : registry
    }

    static func serverURL(for registry: String) -> String {
        normalizedKey(registry) == "docker.io" ? dockerHubKey : registry
    }

    /// The `credHelpers` entry for `registry`. Several keys can name one registry (`docker.io`,
    /// `index.docker.io`, …): the key spelled as asked wins, then the first in sorted order; entries that are
    /// not a helper name are ignored. Reading and storing both use this, so a password stored goes where the
    /// next read looks for it.
    static func credHelper(in document: [String: Any], for registry: String) -> String? {
        guard let helpers = document["credHelpers"] as? [String: Any] else { return nil }
        let wanted = normalizedKey(registry)
        let candidates = helpers.keys.filter { normalizedKey($0) == wanted }
            .sorted { ($0 == registry ? 0 : 1, $0) < ($1 == registry ? 0 : 1, $1) }
        for key in candidates {
            if let name = helpers[key] as? String, !name.isEmpty { return name }
        }
        return nil
    }

    static func helperName(in document: [String: Any], for registry: String) -> String? {
        if let helper = credHelper(in: document, for: registry) { return helper }
        if let store = document["credsStore"] as? String, !store.isEmpty { return store }
        return nil
    }

    func load() throws -> [String: Any]? {
        guard FileManager.default.fileExists(atPath: file.path) else { return nil }
        let data: Data
        do {
            data = try Data(contentsOf: file)
        } catch {
            throw DockerConfigError(file: file, reason: "it cannot be read: \(error.localizedDescription)")
        }
        if data.allSatisfy({ $0 == 0x20 || $0 == 0x0A || $0 == 0x0D || $0 == 0x09 }) { return [:] }
        guard let object = try? JSONSerialization.jsonObject(with: data), let document = object as? [String: Any] else {
            throw DockerConfigError(file: file, reason: "it is not a JSON object")
        }
        return document
    }

    /// Writes atomically with owner-only permissions: the file holds secrets.
    func save(_ document: [String: Any]) throws {
        let directory = file.deletingLastPathComponent()
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let data = try JSONSerialization.data(
            withJSONObject: document, options: [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes])
        let temporary = directory.appendingPathComponent(".config.json.\(UUID().uuidString)")
        guard FileManager.default.createFile(atPath: temporary.path, contents: data, attributes: [.posixPermissions: 0o600])
        else {
            throw DockerConfigError(file: file, reason: "a temporary file could not be created in \(directory.path)")
        }
        do {
            try Self.replace(file, with: temporary)
        } catch {
            try? FileManager.default.removeItem(at: temporary)
            throw DockerConfigError(file: file, reason: "it could not be written: \(error.localizedDescription)")
        }
    }
}

extension DockerConfig {
    /// Moves `temporary` over `file` in one step, so readers see the old or the new file, never half of one.
    static func replace(_ file: URL, with temporary: URL) throws {
        #if os(Windows)
        if FileManager.default.fileExists(atPath: file.path) {
            _ = try FileManager.default.replaceItemAt(file, withItemAt: temporary)
        } else {
            try FileManager.default.moveItem(at: temporary, to: file)
        }
        #else
        guard rename(temporary.path, file.path) == 0 else {
            throw DockerConfigError(file: file, reason: "renaming \(temporary.path) failed (errno \(errno))")
        }
        #endif
    }
}

/// A docker config.json that cannot be used.
public struct DockerConfigError: Error, CustomStringConvertible {
    public let file: URL
    public let reason: String
    public var description: String { "cannot use docker config \(file.path): \(reason)" }
}
