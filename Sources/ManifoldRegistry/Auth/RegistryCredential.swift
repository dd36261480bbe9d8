import Foundation

/// What Manifold presents to a registry or its token server.
public enum RegistryCredential: Sendable, Hashable {
    /// Username and password (or personal access token), sent as Basic auth.
    case basic(username: String, password: String)
    /// An OAuth2 refresh token from `docker login` ("identitytoken"), exchanged at the token server.
    case identityToken(String)
    /// A bearer token to send to the registry as is ("registrytoken").
    case registryToken(String)

    /// Value of an `Authorization: Basic` header, when this is a username and password.
    var basicAuthorization: String? {
        guard case .basic(let username, let password) = self else { return nil }
        return "Basic " + Data("\(username):\(password)".utf8).base64EncodedString()
    }
}

extension RegistryCredential: CustomStringConvertible {
    /// Never shows the secret.
    public var description: String {
        switch self {
        case .basic(let username, _): return "basic(\(username), ******)"
        case .identityToken: return "identityToken(******)"
        case .registryToken: return "registryToken(******)"
        }
    }
}

/// Looks up the credential for a registry host (`HOST[:PORT]` as written in image references).
///
/// A `RegistryClient` asks only when the registry first challenges it, so a provider that fails (a broken
/// credential helper) does not stop anonymous access. Lookups that block (processes, files) must not run
/// on the concurrency pool: `CredentialHelper` runs its process on a thread of its own.
public protocol CredentialProvider: Sendable {
    func credential(for registry: String) async throws -> RegistryCredential?
}

/// Credentials given explicitly (flags), consulted before any other provider.
public struct StaticCredentials: CredentialProvider {
    public var credentials: [String: RegistryCredential]
    public init(_ credentials: [String: RegistryCredential] = [:]) { self.credentials = credentials }
    public func credential(for registry: String) throws -> RegistryCredential? {
        credentials[DockerConfig.normalizedKey(registry)]
    }
}

/// Tries each provider in turn; the first that knows the host wins.
public struct ChainedCredentials: CredentialProvider {
    public var providers: [any CredentialProvider]
    public init(_ providers: [any CredentialProvider]) { self.providers = providers }
    public func credential(for registry: String) async throws -> RegistryCredential? {
        for provider in providers {
            if let credential = try await provider.credential(for: registry) { return credential }
        }
        return nil
    }
}
