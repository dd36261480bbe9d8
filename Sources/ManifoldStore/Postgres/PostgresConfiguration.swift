import Foundation

/// Where the coordinator's shared PostgreSQL database is and how to reach it.
///
/// Built from a libpq-style URL without a password; the password comes from a file or the
/// `MANIFOLD_DATABASE_PASSWORD` environment variable (see ``readPassword(file:environment:)``), so it never
/// appears on a command line or in a process listing:
///
/// ```swift
/// var configuration = try PostgresConfiguration(
///     url: "postgres://manifold@db.example.com:5432/manifold?sslmode=verify-full&sslrootcert=/etc/manifold/db-ca.pem",
///     password: try PostgresConfiguration.readPassword(file: passwordFile))
/// configuration.poolSize = 16
/// let backend = try await PostgresBackend.connect(configuration, logger: logger)
/// ```
///
/// URL parameters: `sslmode` (`disable`, `require`, `verify-ca`, `verify-full`; default `disable` for a loopback
/// host, `verify-full` for any other), `sslrootcert` (a PEM file of the CA(s) to trust; default: the system's),
/// `pool_size` (connections, default 8), `search_path` (the one schema the store's tables live in; default the
/// role's), `connect_timeout` (seconds, default 10), `query_timeout` (seconds without an answer after which the
/// connection is given up, default 60), `application_name` (default `manifold`).
public struct PostgresConfiguration: Sendable, Hashable, CustomStringConvertible {
    /// How the connection is encrypted and the server authenticated, with libpq's names and meanings.
    /// `allow` and `prefer` are not offered: they fall back to plain text without telling.
    public enum SSLMode: String, Sendable, Hashable, CaseIterable {
        /// Plain TCP; only for a database on loopback or a trusted private link.
        case disable
        /// Encrypted; the server's certificate is checked against `sslrootcert` when one is given (then as
        /// `verify-ca`), not at all otherwise — as libpq does.
        case require
        /// Encrypted; the certificate must chain to a trusted CA, its host name is not checked.
        case verifyCA = "verify-ca"
        /// Encrypted; the certificate must chain to a trusted CA and name the host.
        case verifyFull = "verify-full"
    }

    /// The server's host name or IP address (IPv6 without brackets).
    public var host: String
    public var port: Int
    /// The PostgreSQL role the store connects as.
    public var user: String
    public var database: String
    /// The role's password; never part of ``description`` or ``url``.
    public var password: String?
    public var sslMode: SSLMode
    /// A PEM file with the CA certificates to trust instead of the system's.
    public var sslRootCertificate: String?
    /// How many connections (and transactions at once) the backend keeps at most.
    public var poolSize: Int
    /// The schema the store's tables live in (`SET search_path`), or nil for the role's default. Tests give each
    /// store its own.
    public var schema: String?
    /// How long connecting may take, in seconds.
    public var connectTimeout: Int
    /// How long one statement may go without an answer, in seconds, before the connection is considered lost
    /// (a server that vanished without closing the socket).
    public var queryTimeout: Int
    public var applicationName: String

    /// The URL schemes accepted.
    public static let schemes = ["postgres", "postgresql"]
    /// The environment variable ``readPassword(file:environment:)`` reads when no file is given.
    public static let passwordEnvironmentVariable = "MANIFOLD_DATABASE_PASSWORD"

    public init(
        host: String, port: Int = 5432, user: String, database: String, password: String? = nil,
        sslMode: SSLMode? = nil, sslRootCertificate: String? = nil, poolSize: Int = 8, schema: String? = nil
    ) throws {
        self.host = host
        self.port = port
        self.user = user
        self.database = database
        self.password = password
        self.sslMode = sslMode ?? (Self.isLoopback(host) ? .disable : .verifyFull)
        self.sslRootCertificate = sslRootCertificate
        self.poolSize = poolSize
        self.schema = schema
        self.connectTimeout = 10
        self.queryTimeout = 60
        self.applicationName = "manifold"
        try validate()
    }

    /// Parses `postgres://USER@HOST[:PORT][/DATABASE][?PARAMETERS]` (or `postgresql://`). A password in the URL
    /// is refused: pass it as `password`, read from a file or the environment.
    public init(url: String, password: String? = nil) throws {
        let text = url.trimmingCharacters(in: .whitespaces)
        guard let schemeEnd = text.range(of: "://") else {
            throw PostgresConfigurationError(
                "the database URL \(Self.redacted(text)) has no scheme: write postgres://USER@HOST:PORT/DATABASE")
        }
        let scheme = text[..<schemeEnd.lowerBound].lowercased()
        guard Self.schemes.contains(scheme) else {
            throw PostgresConfigurationError(
                "the database URL \(Self.redacted(text)) has scheme \(scheme)://; use postgres:// or postgresql://")
        }
        var rest = text[schemeEnd.upperBound...]
        // Refused before anything else is parsed: a password may hold '/', which would split the URL elsewhere.
        let beforeQuery = rest.prefix { $0 != "?" }
        if let at = beforeQuery.lastIndex(of: "@"), beforeQuery[..<at].contains(":") {
            throw PostgresConfigurationError(
                "the database URL contains a password; remove it (postgres://USER@HOST/…) and give the password in a "
                    + "password file or the \(Self.passwordEnvironmentVariable) environment variable, so it is never "
                    + "on a command line")
        }
        var query = Substring("")
        if let mark = rest.firstIndex(of: "?") {
            query = rest[rest.index(after: mark)...]
            rest = rest[..<mark]
        }
        var path = Substring("")
        if let slash = rest.firstIndex(of: "/") {
            path = rest[rest.index(after: slash)...]
            rest = rest[..<slash]
        }
        guard let at = rest.lastIndex(of: "@") else {
            throw PostgresConfigurationError(
                "the database URL \(Self.redacted(text)) names no user: write postgres://USER@\(rest)/…")
        }
        let userInfo = rest[..<at]
        let hostPort = rest[rest.index(after: at)...]
        let user = try Self.decode(userInfo, what: "user")
        guard !user.isEmpty else {
            throw PostgresConfigurationError(
                "the database URL \(Self.redacted(text)) has an empty user: write postgres://USER@HOST/…")
        }
        let (host, port) = try Self.parseHostPort(hostPort, url: text)
        let database = path.isEmpty ? user : try Self.decode(path, what: "database name")

        try self.init(host: host, port: port, user: user, database: database, password: password)
        var sslModeGiven = false
        for pair in query.split(separator: "&", omittingEmptySubsequences: true) {
            let parts = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            let key = try Self.decode(parts[0], what: "parameter name")
            let value = parts.count > 1 ? try Self.decode(parts[1], what: "value of \(key)") : ""
            switch key {
            case "sslmode":
                guard let mode = SSLMode(rawValue: value) else {
                    throw PostgresConfigurationError(
                        "sslmode=\(value) is not supported; use one of "
                            + SSLMode.allCases.map(\.rawValue).joined(separator: ", ")
                            + (value == "prefer" || value == "allow" ? " (\(value) may silently fall back to plain text)" : ""))
                }
                sslMode = mode
                sslModeGiven = true
            case "sslrootcert":
                sslRootCertificate = value
            case "pool_size":
                poolSize = try Self.integer(value, key: key, range: 1...1000)
            case "search_path":
                schema = value
            case "connect_timeout":
                connectTimeout = try Self.integer(value, key: key, range: 1...3600)
            case "query_timeout":
                queryTimeout = try Self.integer(value, key: key, range: 1...86400)
            case "application_name":
                applicationName = value
            case "password":
                throw PostgresConfigurationError(
                    "the database URL contains a password parameter; remove it and give the password in a password "
                        + "file or the \(Self.passwordEnvironmentVariable) environment variable")
            default:
                throw PostgresConfigurationError(
                    "the database URL has an unknown parameter \(key); known: sslmode, sslrootcert, pool_size, "
                        + "search_path, connect_timeout, query_timeout, application_name")
            }
        }
        if !sslModeGiven, sslRootCertificate != nil { sslMode = .verifyFull }
        try validate()
    }

    /// `HOST:PORT` (IPv6 in brackets), as errors name the server.
    public var address: String { host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)" }

    /// The URL of this configuration, without the password.
    public var url: String {
        var parameters = ["sslmode=\(sslMode.rawValue)"]
        if let sslRootCertificate { parameters.append("sslrootcert=\(Self.encode(sslRootCertificate))") }
        if poolSize != 8 { parameters.append("pool_size=\(poolSize)") }
        if let schema { parameters.append("search_path=\(schema)") }
        if connectTimeout != 10 { parameters.append("connect_timeout=\(connectTimeout)") }
        if queryTimeout != 60 { parameters.append("query_timeout=\(queryTimeout)") }
        if applicationName != "manifold" { parameters.append("application_name=\(Self.encode(applicationName))") }
        return "postgres://\(Self.encode(user))@\(address)/\(Self.encode(database))?"
            + parameters.joined(separator: "&")
    }

    public var description: String { url }

    /// Reads the database password from `file` (its first line) or, without a file, from
    /// `MANIFOLD_DATABASE_PASSWORD`; nil when neither is given (trust or certificate authentication).
    public static func readPassword(
        file: String?, environment: [String: String] = ProcessInfo.processInfo.environment
    ) throws -> String? {
        if let file {
            let data: Data
            do {
                data = try Data(contentsOf: URL(fileURLWithPath: file))
            } catch {
                throw PostgresConfigurationError(
                    "cannot read the database password file \(file): \(error.localizedDescription)")
            }
            let password =
                String(decoding: data, as: UTF8.self).split(separator: "\n", maxSplits: 1).first
                .map { $0.trimmingCharacters(in: CharacterSet(charactersIn: "\r")) } ?? ""
            guard !password.isEmpty else {
                throw PostgresConfigurationError(
                    "the database password file \(file) is empty; write the password on its first line")
            }
            return password
        }
        if let password = environment[passwordEnvironmentVariable], !password.isEmpty { return password }
        return nil
    }

    func validate() throws {
        guard !host.isEmpty else {
            throw PostgresConfigurationError("the database host is empty; name the PostgreSQL server's host")
        }
        guard (1...65535).contains(port) else {
            throw PostgresConfigurationError("the database port \(port) is not a TCP port; use 1-65535 (usually 5432)")
        }
        guard (1...1000).contains(poolSize) else {
            throw PostgresConfigurationError("pool_size=\(poolSize) is out of range; use 1-1000 (default 8)")
        }
        if let schema {
            let valid =
                !schema.isEmpty && schema.utf8.count <= 63
                && schema.unicodeScalars.allSatisfy { ("a"..."z").contains($0) || ("0"..."9").contains($0) || $0 == "_" }
                && !("0"..."9").contains(schema.unicodeScalars.first!)
            guard valid else {
                throw PostgresConfigurationError(
                    "search_path=\(schema) is not a schema name the store accepts; use lower-case letters, digits "
                        + "and _ (not starting with a digit, at most 63 characters)")
            }
        }
        if sslMode == .disable, let sslRootCertificate {
            throw PostgresConfigurationError(
                "sslrootcert=\(sslRootCertificate) is given but sslmode=disable; use sslmode=verify-full to verify "
                    + "the server with that CA, or drop sslrootcert")
        }
        if let sslRootCertificate, !FileManager.default.isReadableFile(atPath: sslRootCertificate) {
            throw PostgresConfigurationError(
                "sslrootcert=\(sslRootCertificate) is not a readable file; give the PEM file of the database's CA")
        }
    }

    static func isLoopback(_ host: String) -> Bool {
        host == "localhost" || host == "::1" || host.hasPrefix("127.")
    }

    private static func parseHostPort(_ text: Substring, url: String) throws -> (String, Int) {
        var host: Substring
        var portText: Substring?
        if text.hasPrefix("[") {
            guard let close = text.firstIndex(of: "]") else {
                throw PostgresConfigurationError(
                    "the database URL \(redacted(url)) has an unclosed IPv6 address \(text); write [ADDRESS]:PORT")
            }
            host = text[text.index(after: text.startIndex)..<close]
            let after = text[text.index(after: close)...]
            if !after.isEmpty {
                guard after.hasPrefix(":") else {
                    throw PostgresConfigurationError(
                        "the database URL \(redacted(url)) has \(after) after the IPv6 address; write [ADDRESS]:PORT")
                }
                portText = after.dropFirst()
            }
        } else if let colon = text.lastIndex(of: ":") {
            host = text[..<colon]
            portText = text[text.index(after: colon)...]
        } else {
            host = text
        }
        guard !host.isEmpty else {
            throw PostgresConfigurationError(
                "the database URL \(redacted(url)) names no host: write postgres://USER@HOST:PORT/DATABASE")
        }
        var port = 5432
        if let portText {
            guard let value = Int(portText), (1...65535).contains(value) else {
                throw PostgresConfigurationError(
                    "the database URL \(redacted(url)) has port \(portText); use a number 1-65535 (usually 5432)")
            }
            port = value
        }
        return (try decode(host, what: "host"), port)
    }

    private static func integer(_ text: String, key: String, range: ClosedRange<Int>) throws -> Int {
        guard let value = Int(text), range.contains(value) else {
            throw PostgresConfigurationError(
                "\(key)=\(text) is not a whole number in \(range.lowerBound)-\(range.upperBound)")
        }
        return value
    }

    private static func decode(_ text: Substring, what: String) throws -> String {
        guard let decoded = String(text).removingPercentEncoding else {
            throw PostgresConfigurationError("the database URL has a badly percent-encoded \(what): \(text)")
        }
        return decoded
    }

    private static func encode(_ text: String) -> String {
        var allowed = CharacterSet.alphanumerics
        allowed.insert(charactersIn: "-._~/")
        return text.addingPercentEncoding(withAllowedCharacters: allowed) ?? text
    }

    /// The URL with anything between `://` and `@` replaced, so an error never repeats a password.
    static func redacted(_ url: String) -> String {
        guard let schemeEnd = url.range(of: "://"), let at = url[schemeEnd.upperBound...].lastIndex(of: "@") else {
            return url
        }
        let userInfo = url[schemeEnd.upperBound..<at]
        guard let colon = userInfo.firstIndex(of: ":") else { return url }
        return String(url[..<colon]) + ":…" + String(url[at...])
    }
}

/// A database URL or setting that cannot be used, with what would be right.
public struct PostgresConfigurationError: Error, CustomStringConvertible, Sendable {
    public let description: String
    init(_ description: String) { self.description = description }
}
