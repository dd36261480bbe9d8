import Foundation
import ManifoldCore
import ManifoldHTTP

/// How Manifold reaches registries: which speak plain HTTP, which CAs and client certificates
/// to use, where credentials come from, and how hard to retry.
public struct RegistryConfiguration: Sendable {
    /// Hosts (`HOST[:PORT]`) reached over plain HTTP. Only ever used when asked for, per registry.
    public var plainHTTPHosts: Set<String>
    /// Extra CA certificate files per host (`--registry-ca HOST=FILE`), in addition to `certs.d`.
    public var caFiles: [String: [String]]
    /// Roots of `certs.d` trees: `ROOT/HOST:PORT/*.crt` (CAs) and `*.cert` + `*.key` (client certificate).
    public var certsDirectories: [URL]
    /// Skips TLS verification for these hosts. Never on by default.
    public var insecureSkipVerifyHosts: Set<String>
    /// Where credentials come from.
    public var credentials: any CredentialProvider
    public var retry: RetryPolicy
    /// Blobs larger than this are uploaded in chunks of this size; smaller ones in one request.
    public var uploadChunkSize: Int64
    /// Upper bound for manifests and configs read into memory (the distribution spec suggests 4 MiB for manifests).
    public var maxDocumentSize: Int64
    public var userAgent: String
    /// Settings for the HTTP client other than TLS, which is chosen per host. Registries are spoken to over HTTP/1.1
    /// (``defaultHTTP``).
    public var http: HTTPClientConfiguration
    /// The registries that may be contacted at all; nil allows any (the CLI), a list is the coordinator's
    /// `allowed_registries`. Any other registry fails with `RegistryError.registryNotAllowed` before a connection.
    public var allowedRegistries: [RegistryPattern]?
    /// The name of the setting `allowedRegistries` comes from, quoted in refusals.
    public var allowedRegistriesSetting: String
    /// How token realms, upload locations and redirects away from a registry are checked (see `DestinationPolicy`).
    public var destinations: DestinationRules
    /// Caps on what one assembly may cost: index entries flattened, bytes copied across registries.
    public var limits: AssemblyLimits

    /// HTTP/1.1 with keep-alive, never HTTP/2. Over HTTP/2 (offered by ALPN by docker-registry, and most registries),
    /// the libcurl of Debian 12 (7.88) now and then holds a request's upload among several on one connection until its
    /// one-second internal timer: 3 of 900 concurrent manifest PUTs waited 1.02 s, every one over HTTP/1.1 took under
    /// 35 ms (`RegistryHTTPVersionTests`), and `deploy/bench/end-to-end.sh` showed one build in 150 waiting a second for
    /// its verification. Concurrent requests to a registry go on connections of their own instead, which the client
    /// keeps for reuse.
    public static let defaultHTTP = HTTPClientConfiguration(httpVersion: .http1_1, maxRedirects: 5)

    public static let defaultCertsDirectories: [URL] = {
        #if os(Windows)
        let programData = ProcessInfo.processInfo.environment["ProgramData"] ?? "C:\\ProgramData"
        return [URL(fileURLWithPath: programData).appendingPathComponent("docker/certs.d")]
        #else
        var directories = [URL(fileURLWithPath: "/etc/docker/certs.d"), URL(fileURLWithPath: "/etc/containers/certs.d")]
        if let home = ProcessInfo.processInfo.environment["HOME"] {
            directories.append(URL(fileURLWithPath: home).appendingPathComponent(".config/containers/certs.d"))
        }
        return directories
        #endif
    }()

    public init(
        plainHTTPHosts: Set<String> = [],
        caFiles: [String: [String]] = [:],
        certsDirectories: [URL] = RegistryConfiguration.defaultCertsDirectories,
        insecureSkipVerifyHosts: Set<String> = [],
        credentials: any CredentialProvider = DockerConfig(),
        retry: RetryPolicy = RetryPolicy(),
        uploadChunkSize: Int64 = 16 << 20,
        maxDocumentSize: Int64 = 8 << 20,
        userAgent: String = "manifold/\(ManifoldRegistryVersion.current)",
        http: HTTPClientConfiguration = RegistryConfiguration.defaultHTTP,
        allowedRegistries: [RegistryPattern]? = nil,
        allowedRegistriesSetting: String = "allowed_registries",
        destinations: DestinationRules = DestinationRules(),
        limits: AssemblyLimits = AssemblyLimits()
    ) {
        self.allowedRegistries = allowedRegistries
        self.allowedRegistriesSetting = allowedRegistriesSetting
        self.destinations = destinations
        self.limits = limits
        self.plainHTTPHosts = plainHTTPHosts
        self.caFiles = caFiles
        self.certsDirectories = certsDirectories
        self.insecureSkipVerifyHosts = insecureSkipVerifyHosts
        self.credentials = credentials
        self.retry = retry
        self.uploadChunkSize = uploadChunkSize
        self.maxDocumentSize = maxDocumentSize
        self.userAgent = userAgent
        self.http = http
    }

    /// Parses `HOST=FILE` as given to `--registry-ca`.
    public static func parseCAFlag(_ value: String) throws -> (host: String, file: String) {
        guard let equals = value.firstIndex(of: "="), equals != value.startIndex,
            value.index(after: equals) != value.endIndex
        else {
            throw RegistryConfigurationError(
                "invalid --registry-ca \"\(value)\": expected HOST[:PORT]=FILE, e.g. registry.local:5000=/etc/ssl/registry-ca.pem"
            )
        }
        let host = String(value[..<equals])
        let file = String(value[value.index(after: equals)...])
        guard FileManager.default.isReadableFile(atPath: file) else {
            throw RegistryConfigurationError(
                "invalid --registry-ca \"\(value)\": the file \(file) does not exist or is not readable")
        }
        return (host, file)
    }

    /// The form hosts are compared in: lowercased (host names are case-insensitive), without a scheme
    /// or path, and Docker Hub's aliases as `docker.io`.
    public static func hostKey(_ host: String) -> String { DockerConfig.normalizedKey(host) }

    static func contains(_ hosts: Set<String>, _ host: String) -> Bool {
        let wanted = hostKey(host)
        return hosts.contains { hostKey($0) == wanted }
    }

    /// The scheme Manifold uses for `host`.
    public func scheme(for host: String) -> String {
        Self.contains(plainHTTPHosts, host) ? "http" : "https"
    }

    /// TLS settings for one registry: `--registry-ca` files and the `certs.d` trees, in that order.
    ///
    /// Custom CAs are added to the system's CA bundle (as Docker does), not used instead of it: the bundle's text as
    /// read now, and the CAs after it.
    public func tls(for host: String) throws -> TLSConfiguration {
        var tls = TLSConfiguration()
        tls.insecureSkipVerify = Self.contains(insecureSkipVerifyHosts, host)
        var caPEMs: [String] = []
        let wanted = Self.hostKey(host)
        for (key, files) in caFiles.sorted(by: { $0.key < $1.key }) where Self.hostKey(key) == wanted {
            for file in files { caPEMs.append(try Self.readPEM(file, host: host)) }
        }
        // certs.d directories are named as users type hosts; look under the name as given and lowercased.
        var names: [String] = []
        for name in [host, host.lowercased()].map(Self.certsDirectoryName(for:)) where !names.contains(name) {
            names.append(name)
        }
        for root in certsDirectories {
            for name in names {
                try addCertsDirectory(root.appendingPathComponent(name), host: host, caPEMs: &caPEMs, tls: &tls)
            }
        }
        if !caPEMs.isEmpty {
            if let system = Self.systemBundle() { caPEMs.insert(system, at: 0) }
            tls.caPEM = caPEMs.joined(separator: "\n")
        }
        return tls
    }

    /// The TLS settings of a client for `host`: `tls(for:)`, with the system bundle's file as `caFile` when the host
    /// has no CA of its own (unless its certificates are not checked at all).
    ///
    /// libcurl parses a trust given as one file once per client and reads the file again after a day, so an update
    /// of the system's CAs reaches a long-running coordinator. Its own defaults (Debian's: the bundle and the
    /// `/etc/ssl/certs` directory) made it parse the whole bundle, about 150 certificates, for every new connection.
    /// On a system with none of the bundles `systemBundlePath()` knows (Windows), libcurl's defaults stay.
    public func clientTLS(for host: String) throws -> TLSConfiguration {
        var tls = try tls(for: host)
        if tls.caPEM == nil, tls.caFile == nil, !tls.insecureSkipVerify, let system = Self.systemBundlePath() {
            tls.caFile = system
        }
        return tls
    }

    private func addCertsDirectory(
        _ directory: URL, host: String, caPEMs: inout [String], tls: inout TLSConfiguration
    ) throws {
        guard let entries = try? FileManager.default.contentsOfDirectory(atPath: directory.path) else { return }
        for entry in entries.sorted() {
            let path = directory.appendingPathComponent(entry).path
            if entry.hasSuffix(".crt") {
                caPEMs.append(try Self.readPEM(path, host: host))
            } else if entry.hasSuffix(".cert"), tls.clientCertificateFile == nil {
                let key = directory.appendingPathComponent(String(entry.dropLast(5)) + ".key").path
                guard FileManager.default.fileExists(atPath: key) else {
                    throw RegistryConfigurationError(
                        "client certificate \(path) for \(host) has no matching key \(key); certs.d needs NAME.cert and NAME.key"
                    )
                }
                tls.clientCertificateFile = path
                tls.clientKeyFile = key
            }
        }
    }

    /// certs.d directories are named like the host; Windows cannot have ':' in a name, so Docker uses '_' there.
    static func certsDirectoryName(for host: String) -> String {
        #if os(Windows)
        return host.replacingOccurrences(of: ":", with: "_")
        #else
        return host
        #endif
    }

    static func readPEM(_ path: String, host: String) throws -> String {
        guard let text = try? String(contentsOfFile: path, encoding: .utf8), text.contains("-----BEGIN CERTIFICATE-----") else {
            throw RegistryConfigurationError(
                "CA file \(path) for \(host) is not a PEM certificate (expected -----BEGIN CERTIFICATE-----)")
        }
        return text
    }

    static func systemBundle() -> String? {
        systemBundlePath().flatMap { try? String(contentsOfFile: $0, encoding: .utf8) }
    }

    /// The first of the usual places of the system's CA bundle that this process can read.
    static func systemBundlePath() -> String? {
        ["/etc/ssl/certs/ca-certificates.crt", "/etc/pki/tls/certs/ca-bundle.crt", "/etc/ssl/cert.pem"].first {
            FileManager.default.isReadableFile(atPath: $0)
        }
    }
}

/// How a registry client checks URLs that leave the registry: token realms, upload `Location`s, pagination
/// links and redirects. See `DestinationPolicy` for the rules.
public struct DestinationRules: Sendable {
    /// Redirects one request may follow (each hop is checked).
    public var maxRedirects: Int
    public var resolver: HostResolver
    /// The kind of network an address belongs to; tests inject one that calls a loopback registry public.
    public var scope: @Sendable (IPAddress) -> AddressScope

    public init(
        maxRedirects: Int = 5, resolver: HostResolver = .system,
        scope: @escaping @Sendable (IPAddress) -> AddressScope = { $0.scope }
    ) {
        self.maxRedirects = maxRedirects
        self.resolver = resolver
        self.scope = scope
    }

    /// The policy for requests of the registry at `origin`.
    func policy(origin: URL, plainHTTP: Bool) -> DestinationPolicy {
        DestinationPolicy(
            trustedOrigin: origin, allowsPlainHTTP: plainHTTP, maxRedirects: maxRedirects, resolver: resolver, scope: scope)
    }
}

/// Caps that keep one list from costing unbounded work: a crafted index with thousands of entries, or a build
/// that copies terabytes from another registry.
public struct AssemblyLimits: Sendable, Hashable {
    /// Entries an index may have to be flattened into a list.
    public var maxIndexEntries: Int
    /// Blob bytes one assembly (one verification or one publication) may copy through Manifold: downloaded from
    /// another registry (or another repository, when a mount is refused) and uploaded to the target.
    public var maxCopiedBytes: Int64

    public init(maxIndexEntries: Int = 256, maxCopiedBytes: Int64 = 10 << 30) {
        self.maxIndexEntries = maxIndexEntries
        self.maxCopiedBytes = maxCopiedBytes
    }
}

public struct RegistryConfigurationError: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}

public enum ManifoldRegistryVersion {
    public static let current = "0.1.0"
}
