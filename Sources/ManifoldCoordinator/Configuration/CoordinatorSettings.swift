import Foundation
import Logging
import ManifoldCore
import ManifoldLogging
import ManifoldStore
import Yams

/// The coordinator's settings, resolved with the precedence flags > environment (`MANIFOLD_*`) > config file
/// (`manifold.yaml` in the state directory) > defaults.
///
/// ```swift
/// let settings = try CoordinatorSettings.resolve(
///     configFile: state.configFile,
///     environment: ProcessInfo.processInfo.environment,
///     flags: ["listen": "[::]:8443"])
/// ```
///
/// Every setting has a YAML key (`lease_ttl_seconds`), an environment variable (`MANIFOLD_LEASE_TTL_SECONDS`)
/// and a flag name, the YAML key (the CLI passes `--lease-ttl-seconds` as `lease_ttl_seconds`; `-` and `_`
/// are interchangeable).
public struct CoordinatorSettings: Sendable, Equatable {
    /// Where the server listens, `HOST:PORT`; an IPv6 host in brackets (`[::]:7443`).
    public var listen: String
    /// Whether the server speaks TLS. Off only when asked for explicitly (`--insecure-plain-http`,
    /// `MANIFOLD_INSECURE_PLAIN_HTTP=true` or `tls: false`), for running behind a TLS-terminating proxy.
    public var tls: Bool
    /// How agents reach the coordinator, e.g. `https://coord.example:7443`, printed by `manifold init`.
    public var publicURL: String?
    /// The minimum log level: trace, debug, info, notice, warning, error or critical.
    public var logLevel: String
    /// How log records are written: `text`, or `json` (one object a line, metadata as fields) for a log collector.
    public var logFormat: LogFormat = .text
    /// How long a job lease lasts without a heartbeat before the attempt counts as lost.
    public var leaseTTLSeconds: Int
    /// How often agents are told to heartbeat; less than ``leaseTTLSeconds``.
    public var heartbeatIntervalSeconds: Int
    /// How long a poll request is held open waiting for a matching job. At most 60: agents give up on a request
    /// that sends nothing for 75 s, and a poll they gave up on must never be answered with a lease.
    public var pollTimeoutSeconds: Int
    /// Attempts per platform job when a build does not say.
    public var defaultMaxAttempts: Int
    /// The tag of each per-platform image; see ``childTag(template:tag:os:architecture:variant:osVersion:)``.
    public var childTagTemplate: String
    /// The largest JSON request body accepted.
    public var maxRequestBodyBytes: Int
    /// The largest build context upload accepted.
    public var maxContextBytes: Int64
    /// The first wait before a failed job or list push is tried again; doubled each time up to ``maxRetryBackoffSeconds``.
    public var retryBackoffSeconds: Int
    public var maxRetryBackoffSeconds: Int
    /// The most log bytes kept per attempt.
    public var maxLogBytesPerAttempt: Int64
    /// The only registries the coordinator reaches and builds may name (`HOST`, `HOST:PORT`, `*.DOMAIN`); empty
    /// (the default) allows none, so an admin names them (`manifold init --allow-registry`, `allowed_registries`).
    public var allowedRegistries: [RegistryPattern]
    /// Registries (`host[:port]`) reached over plain HTTP.
    public var insecureRegistries: [String]
    /// Extra CA certificates (PEM file paths) trusted for a registry host.
    public var registryCAs: [String: String]
    /// How many verifications, and separately how many publications, run at once against one registry.
    public var registryConcurrency: Int
    /// The longest one verification or publication may take before it is cancelled and tried again later.
    public var registryDeadlineSeconds: Int
    /// The most blob bytes one verification or publication copies through the coordinator from another registry.
    public var maxCopiedBytesPerBuild: Int64
    /// Days a finished build's logs and events are kept (an attempt's log: days after the attempt ended);
    /// 0 keeps them forever. The build's result (state, digests, list) is always kept.
    public var retentionDays: Int
    /// Hours an uploaded context is kept after it was last used (uploaded, submitted, downloaded) once no
    /// unfinished build needs it; 0 keeps contexts forever.
    public var contextRetentionHours: Int
    /// Seconds between retention runs (the first runs a minute after start).
    public var retentionIntervalSeconds: Int
    /// Seconds a connection may wait for a complete request head (from its start or its last response) or between
    /// chunks of a request body before it is closed. Held polls and event streams are requests, never idle.
    public var idleTimeoutSeconds: Int
    /// Seconds a client has to finish the TLS handshake after connecting.
    public var tlsHandshakeTimeoutSeconds: Int
    /// The most connections open at once; past it new connections wait in the kernel's accept queue.
    public var maxConnections: Int
    /// Repositories besides a build's own where an agent may report its image (`REGISTRY/PATH` patterns); the
    /// coordinator copies from there into the build's repository. Empty (the default): only the build's own.
    public var stagingRepositories: [RepositoryPattern] = []
    /// The most unfinished builds one token may have; more are refused with 429.
    public var maxQueuedBuildsPerToken: Int = 100
    /// The most platforms one build may ask for; more are refused with 400.
    public var maxPlatformsPerBuild: Int = 32
    /// The most event streams and log follows one token (or agent) may hold open at once; more are refused with 429.
    public var maxStreamsPerToken: Int = 16
    /// Failed authentications (401) one client address may cause per minute; then it gets 429 until the
    /// minute is over, before its token is even looked up.
    public var authFailuresPerMinute: Int = 20
    /// The PostgreSQL database replicas share, `postgres://USER@HOST:PORT/DB[?sslmode=…]`; nil (the default): the
    /// embedded SQLite file in the state directory. Never holds a password: that comes from
    /// ``databasePasswordFile`` or the `MANIFOLD_DATABASE_PASSWORD` environment variable.
    public var databaseURL: String?
    /// A file whose content (first line) is the database password.
    public var databasePasswordFile: String?
    /// Connections each replica keeps to PostgreSQL; with N replicas the server needs N × (this + 1) connections.
    public var databasePoolSize: Int = 8
    /// Where finished spans go, an OTLP/HTTP traces URL used as given (`https://collector.example:4318/v1/traces`);
    /// nil (the default): tracing is off unless the standard `OTEL_EXPORTER_OTLP_ENDPOINT` or
    /// `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` environment variable names a collector.
    public var otlpTracesEndpoint: String?
    /// How spans are encoded for the collector: `http/protobuf` (the default) or `http/json`.
    public var otlpTracesProtocol: String = "http/protobuf"

    /// The built-in defaults.
    public static let defaults = CoordinatorSettings(
        listen: "0.0.0.0:7443",
        tls: true,
        publicURL: nil,
        logLevel: "info",
        leaseTTLSeconds: 60,
        heartbeatIntervalSeconds: 10,
        pollTimeoutSeconds: 30,
        defaultMaxAttempts: 3,
        childTagTemplate: "{tag}-{os}-{arch}{-variant}",
        maxRequestBodyBytes: 1 << 20,
        maxContextBytes: 2 << 30,
        retryBackoffSeconds: 5,
        maxRetryBackoffSeconds: 300,
        maxLogBytesPerAttempt: 64 << 20,
        allowedRegistries: [],
        insecureRegistries: [],
        registryCAs: [:],
        registryConcurrency: 4,
        registryDeadlineSeconds: 600,
        maxCopiedBytesPerBuild: 10 << 30,
        retentionDays: 30,
        contextRetentionHours: 24,
        retentionIntervalSeconds: 600,
        idleTimeoutSeconds: 75,
        tlsHandshakeTimeoutSeconds: 10,
        maxConnections: 4096
    )

    /// What the retention service deletes, from ``retentionDays`` and ``contextRetentionHours`` (0 = never).
    public var retentionPolicy: RetentionPolicy {
        RetentionPolicy(
            logRetention: retentionDays > 0 ? TimeInterval(retentionDays) * 86_400 : nil,
            contextRetention: contextRetentionHours > 0 ? TimeInterval(contextRetentionHours) * 3_600 : nil)
    }

    /// The log level as swift-log's type (always valid after ``resolve(configFile:environment:flags:)``).
    public var loggerLevel: Logger.Level {
        Logger.Level(rawValue: logLevel) ?? .info
    }

    /// The host and port of ``listen``, the host without IPv6 brackets.
    public var listenAddress: (host: String, port: Int) {
        (try? Self.parseListen(listen)) ?? ("0.0.0.0", 7443)
    }

    /// Loads the file (missing file = defaults), then applies environment, then flags (a [String: String] of
    /// explicit flag values keyed by setting name, as the CLI passes them). Every bad value →
    /// CoordinatorSettingsError naming the source (file path + key, env var name, or flag), the value, and what
    /// is valid. Unknown keys in the file are errors (typos must not be silently ignored), with the line number
    /// if Yams gives it.
    ///
    /// Only `MANIFOLD_*` variables that name a setting are read; other `MANIFOLD_*` variables (the agent's, the
    /// CLI's) are ignored.
    public static func resolve(
        configFile: URL?,
        environment: [String: String],
        flags: [String: String]
    ) throws -> CoordinatorSettings {
        var resolver = Resolver()
        if let configFile {
            try resolver.applyFile(configFile)
        }
        try resolver.applyEnvironment(environment)
        try resolver.applyFlags(flags)
        try resolver.checkConsistency()
        return resolver.settings
    }
}

// MARK: - Setting keys

extension CoordinatorSettings {
    /// A setting's names in every source.
    enum Key: String, CaseIterable {
        case listen
        case tls
        case publicURL = "public_url"
        case logLevel = "log_level"
        case logFormat = "log_format"
        case leaseTTLSeconds = "lease_ttl_seconds"
        case heartbeatIntervalSeconds = "heartbeat_interval_seconds"
        case pollTimeoutSeconds = "poll_timeout_seconds"
        case defaultMaxAttempts = "default_max_attempts"
        case childTagTemplate = "child_tag_template"
        case maxRequestBodyBytes = "max_request_body_bytes"
        case maxContextBytes = "max_context_bytes"
        case retryBackoffSeconds = "retry_backoff_seconds"
        case maxRetryBackoffSeconds = "max_retry_backoff_seconds"
        case maxLogBytesPerAttempt = "max_log_bytes_per_attempt"
        case allowedRegistries = "allowed_registries"
        case insecureRegistries = "insecure_registries"
        case registryCAs = "registry_cas"
        case registryConcurrency = "registry_concurrency"
        case registryDeadlineSeconds = "registry_deadline_seconds"
        case maxCopiedBytesPerBuild = "max_copied_bytes_per_build"
        case retentionDays = "retention_days"
        case contextRetentionHours = "context_retention_hours"
        case retentionIntervalSeconds = "retention_interval_seconds"
        case idleTimeoutSeconds = "idle_timeout_seconds"
        case tlsHandshakeTimeoutSeconds = "tls_handshake_timeout_seconds"
        case maxConnections = "max_connections"
        case stagingRepositories = "staging_repositories"
        case maxQueuedBuildsPerToken = "max_queued_builds_per_token"
        case maxPlatformsPerBuild = "max_platforms_per_build"
        case maxStreamsPerToken = "max_streams_per_token"
        case authFailuresPerMinute = "auth_failures_per_minute"
        case databaseURL = "database_url"
        case databasePasswordFile = "database_password_file"
        case databasePoolSize = "database_pool_size"
        case otlpTracesEndpoint = "otlp_traces_endpoint"
        case otlpTracesProtocol = "otlp_traces_protocol"

        var yamlKey: String { rawValue }
        var environmentVariable: String { "MANIFOLD_" + rawValue.uppercased() }
    }

    /// The plain-HTTP switch, an alias that sets ``tls`` to its negation (flags and environment only).
    static let insecurePlainHTTPName = "insecure_plain_http"
    static let insecurePlainHTTPVariable = "MANIFOLD_INSECURE_PLAIN_HTTP"

    static let validLogLevels = Logger.Level.allCases.map(\.rawValue)
    static let otlpTracesProtocols = ["http/protobuf", "http/json"]
    static let leaseTTLRange = 5...86_400
    static let heartbeatRange = 1...3_600
    static let pollTimeoutRange = 1...60
    static let maxAttemptsRange = 1...100
    static let requestBodyRange = 1_024...(1 << 30)
    static let retryBackoffRange = 1...3_600
    static let maxRetryBackoffRange = 1...86_400
    static let logBytesRange: ClosedRange<Int64> = 65_536...(16 << 30)
    static let contextRange: ClosedRange<Int64> = (1 << 20)...(1 << 40)
    static let retentionDaysRange = 0...36_500
    static let registryConcurrencyRange = 1...64
    static let registryDeadlineRange = 10...86_400
    static let copiedBytesRange: ClosedRange<Int64> = (1 << 20)...(1 << 44)
    static let contextRetentionHoursRange = 0...876_000
    static let retentionIntervalRange = 10...86_400
    static let idleTimeoutRange = 1...3_600
    static let tlsHandshakeTimeoutRange = 1...300
    static let maxConnectionsRange = 1...1_000_000
    static let queuedBuildsRange = 1...1_000_000
    static let platformsPerBuildRange = 1...256
    static let streamsPerTokenRange = 1...10_000
    static let authFailuresRange = 1...1_000_000
    static let databasePoolRange = 1...500
}

/// A value as it arrives from a source: YAML keeps lists and maps structured, env and flags give text.
enum RawSetting {
    case text(String)
    case null
    case list([String])
    case map([(String, String)])

    var display: String {
        switch self {
        case .text(let text): text
        case .null: "null"
        case .list(let items): "[" + items.joined(separator: ", ") + "]"
        case .map(let pairs): "{" + pairs.map { "\($0.0): \($0.1)" }.joined(separator: ", ") + "}"
        }
    }
}

// MARK: - Resolution

extension CoordinatorSettings {
    struct Resolver {
        var settings = CoordinatorSettings.defaults
        var sources: [Key: SettingSource] = [:]

        func source(of key: Key) -> SettingSource {
            sources[key] ?? .defaults
        }

        mutating func applyFile(_ url: URL) throws {
            let path = url.path
            let text: String
            do {
                guard FileManager.default.fileExists(atPath: path) else { return }
                text = try String(contentsOf: url, encoding: .utf8)
            } catch {
                throw CoordinatorSettingsError.unreadableFile(path: path, reason: "\(error)")
            }
            let root: Node?
            do {
                root = try Yams.compose(yaml: text)
            } catch {
                throw CoordinatorSettingsError.unreadableFile(path: path, reason: "not valid YAML: \(error)")
            }
            guard let root else { return }  // empty file or only comments
            guard let mapping = root.mapping else {
                throw CoordinatorSettingsError.unreadableFile(
                    path: path, reason: "expected a mapping of settings (`key: value` lines) at the top level")
            }
            var seen: [String: Int?] = [:]
            for (keyNode, valueNode) in mapping {
                let name = keyNode.string ?? "\(keyNode)"
                let line = keyNode.mark?.line
                guard let key = Key(rawValue: name) else {
                    throw CoordinatorSettingsError.unknownKey(
                        path: path, key: name, line: line, validKeys: Key.allCases.map(\.yamlKey))
                }
                if let earlier = seen[name] {
                    throw CoordinatorSettingsError.unreadableFile(
                        path: path,
                        reason: "key \(name) appears twice (line \(earlier.map(String.init) ?? "?") "
                            + "and line \(line.map(String.init) ?? "?")); keep one.")
                }
                seen[name] = line
                let source = SettingSource.file(path: path, key: name, line: valueNode.mark?.line ?? line)
                try apply(key, Self.raw(valueNode, source: source), from: source)
            }
        }

        static func raw(_ node: Node, source: SettingSource) throws -> RawSetting {
            switch node {
            case .scalar(let scalar):
                if scalar.style == .plain, ["", "~", "null", "Null", "NULL"].contains(scalar.string) {
                    return .null
                }
                return .text(scalar.string)
            case .sequence(let sequence):
                return .list(
                    try sequence.map { item in
                        guard case .scalar(let scalar) = item else {
                            throw CoordinatorSettingsError.invalidValue(
                                source: source, value: "\(item)", expected: "a list of plain strings")
                        }
                        return scalar.string
                    })
            case .mapping(let mapping):
                return .map(
                    try mapping.map { key, value in
                        guard case .scalar(let k) = key, case .scalar(let v) = value else {
                            throw CoordinatorSettingsError.invalidValue(
                                source: source, value: "\(key): \(value)", expected: "a map of strings to strings")
                        }
                        return (k.string, v.string)
                    })
            }
        }

        mutating func applyEnvironment(_ environment: [String: String]) throws {
            let plainHTTP = environment[insecurePlainHTTPVariable]
            for key in Key.allCases {
                guard let value = environment[key.environmentVariable] else { continue }
                let source = SettingSource.environment(key.environmentVariable)
                try apply(key, Self.textualRaw(value, for: key, source: source), from: source)
            }
            if let plainHTTP {
                try applyPlainHTTP(plainHTTP, from: .environment(insecurePlainHTTPVariable))
            }
        }

        mutating func applyFlags(_ flags: [String: String]) throws {
            let validFlags = Key.allCases.map(\.yamlKey) + [insecurePlainHTTPName]
            var plainHTTP: String?
            for (name, value) in flags.sorted(by: { $0.key < $1.key }) {
                let normalised = name.replacingOccurrences(of: "-", with: "_").trimmingPrefix("__")
                if normalised == insecurePlainHTTPName {
                    plainHTTP = value
                    continue
                }
                guard let key = Key(rawValue: String(normalised)) else {
                    throw CoordinatorSettingsError.unknownFlag(name, validFlags: validFlags)
                }
                let source = SettingSource.flag(key.yamlKey)
                try apply(key, Self.textualRaw(value, for: key, source: source), from: source)
            }
            if let plainHTTP {
                try applyPlainHTTP(plainHTTP, from: .flag(insecurePlainHTTPName))
            }
        }

        /// `insecure_plain_http=true` means `tls=false`; at the same level it must not contradict `tls`.
        mutating func applyPlainHTTP(_ value: String, from source: SettingSource) throws {
            let plain = try CoordinatorSettings.parseBool(value, source: source)
            let tlsSource = self.source(of: .tls)
            let sameLevel =
                switch (tlsSource, source) {
                case (.environment, .environment), (.flag, .flag): true
                default: false
                }
            if sameLevel, settings.tls == plain {
                throw CoordinatorSettingsError.inconsistent(
                    "\(source) is \(value) but \(tlsSource) is \(settings.tls): "
                        + "plain HTTP means TLS off; set only one of them.")
            }
            settings.tls = !plain
            sources[.tls] = source
        }

        /// Env and flags give text: lists are comma-separated, maps `host=path` pairs, comma-separated.
        static func textualRaw(_ text: String, for key: Key, source: SettingSource) throws -> RawSetting {
            let items = text.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter {
                !$0.isEmpty
            }
            switch key {
            case .insecureRegistries, .allowedRegistries, .stagingRepositories:
                return .list(items)
            case .registryCAs:
                return .map(
                    try items.map { item in
                        guard let equals = item.firstIndex(of: "=") else {
                            throw CoordinatorSettingsError.invalidValue(
                                source: source, value: text,
                                expected: "comma-separated HOST=CA_FILE pairs, e.g. registry.local:5000=/etc/ca.pem")
                        }
                        return (String(item[..<equals]), String(item[item.index(after: equals)...]))
                    })
            default:
                return .text(text)
            }
        }

        mutating func apply(_ key: Key, _ raw: RawSetting, from source: SettingSource) throws {
            func invalid(_ expected: String) -> CoordinatorSettingsError {
                .invalidValue(source: source, value: raw.display, expected: expected)
            }
            func text(_ expected: String) throws -> String {
                guard case .text(let value) = raw else { throw invalid(expected) }
                return value
            }
            func integer(_ range: ClosedRange<Int>, unit: String, why: String? = nil) throws -> Int {
                let expected =
                    "a whole number of \(unit) from \(range.lowerBound) to \(range.upperBound)" + (why.map { " (\($0))" } ?? "")
                guard let value = Int(try text(expected).trimmingCharacters(in: .whitespaces)), range.contains(value)
                else { throw invalid(expected) }
                return value
            }

            switch key {
            case .listen:
                let expected = "HOST:PORT with a port from 1 to 65535, e.g. 0.0.0.0:7443, [::]:7443 or coord.example:7443"
                let value = try text(expected)
                do {
                    _ = try CoordinatorSettings.parseListen(value)
                } catch let problem as ListenProblem {
                    throw invalid("\(problem.message); use \(expected)")
                }
                settings.listen = value
            case .tls:
                settings.tls = try CoordinatorSettings.parseBool(try text("true or false"), source: source)
            case .publicURL:
                if case .null = raw {
                    settings.publicURL = nil
                } else {
                    let expected = "an http:// or https:// URL with a host and no path, e.g. https://coord.example:7443"
                    let value = try text(expected)
                    if value.isEmpty {
                        settings.publicURL = nil
                    } else {
                        guard let normalised = CoordinatorSettings.normalisePublicURL(value) else {
                            throw invalid(expected)
                        }
                        settings.publicURL = normalised
                    }
                }
            case .logLevel:
                let expected = "one of " + validLogLevels.joined(separator: ", ")
                let value = try text(expected).lowercased()
                guard validLogLevels.contains(value) else { throw invalid(expected) }
                settings.logLevel = value
            case .logFormat:
                let expected = LogFormat.allCases.map(\.rawValue).joined(separator: " or ")
                guard let format = LogFormat(rawValue: try text(expected).lowercased()) else { throw invalid(expected) }
                settings.logFormat = format
            case .leaseTTLSeconds:
                settings.leaseTTLSeconds = try integer(leaseTTLRange, unit: "seconds")
            case .heartbeatIntervalSeconds:
                settings.heartbeatIntervalSeconds = try integer(heartbeatRange, unit: "seconds")
            case .pollTimeoutSeconds:
                // Agents give up on a request that sends nothing for 75 s; a longer hold would answer a poll
                // nobody waits for.
                settings.pollTimeoutSeconds = try integer(
                    pollTimeoutRange, unit: "seconds", why: "agents give up on a silent request after 75")
            case .defaultMaxAttempts:
                settings.defaultMaxAttempts = try integer(maxAttemptsRange, unit: "attempts")
            case .childTagTemplate:
                let value = try text("a tag template such as {tag}-{os}-{arch}{-variant}")
                if let problem = CoordinatorSettings.problem(withChildTagTemplate: value) {
                    throw invalid(problem)
                }
                settings.childTagTemplate = value
            case .maxRequestBodyBytes:
                settings.maxRequestBodyBytes = try integer(requestBodyRange, unit: "bytes")
            case .maxContextBytes:
                let expected = "a whole number of bytes from \(contextRange.lowerBound) to \(contextRange.upperBound)"
                guard let value = Int64(try text(expected).trimmingCharacters(in: .whitespaces)),
                    contextRange.contains(value)
                else { throw invalid(expected) }
                settings.maxContextBytes = value
            case .retryBackoffSeconds:
                settings.retryBackoffSeconds = try integer(retryBackoffRange, unit: "seconds")
            case .maxRetryBackoffSeconds:
                settings.maxRetryBackoffSeconds = try integer(maxRetryBackoffRange, unit: "seconds")
            case .maxLogBytesPerAttempt:
                let expected = "a whole number of bytes from \(logBytesRange.lowerBound) to \(logBytesRange.upperBound)"
                guard let value = Int64(try text(expected).trimmingCharacters(in: .whitespaces)), logBytesRange.contains(value)
                else { throw invalid(expected) }
                settings.maxLogBytesPerAttempt = value
            case .allowedRegistries:
                let expected = "a list of registries as HOST, HOST:PORT or *.DOMAIN, without a scheme or path"
                let items: [String]
                switch raw {
                case .null: items = []
                case .list(let list): items = list
                default: throw invalid(expected)
                }
                settings.allowedRegistries = try items.map { item in
                    do { return try RegistryPattern(parsing: item) } catch let error as RegistryPatternError {
                        throw CoordinatorSettingsError.invalidValue(source: source, value: item, expected: error.reason)
                    }
                }
            case .insecureRegistries:
                let expected = "a list of registry hosts as HOST or HOST:PORT, without a scheme or path"
                let items: [String]
                switch raw {
                case .null: items = []
                case .list(let list): items = list
                default: throw invalid(expected)
                }
                for item in items where !CoordinatorSettings.isRegistryHost(item) {
                    throw CoordinatorSettingsError.invalidValue(source: source, value: item, expected: expected)
                }
                settings.insecureRegistries = items
            case .registryCAs:
                let expected = "a map of registry HOST[:PORT] to the absolute path of a PEM CA file"
                let pairs: [(String, String)]
                switch raw {
                case .null: pairs = []
                case .map(let map): pairs = map
                default: throw invalid(expected)
                }
                var result: [String: String] = [:]
                for (host, file) in pairs {
                    guard CoordinatorSettings.isRegistryHost(host), file.hasPrefix("/") else {
                        throw CoordinatorSettingsError.invalidValue(
                            source: source, value: "\(host): \(file)", expected: expected)
                    }
                    result[host] = file
                }
                settings.registryCAs = result
            case .registryConcurrency:
                settings.registryConcurrency = try integer(registryConcurrencyRange, unit: "requests per registry")
            case .registryDeadlineSeconds:
                settings.registryDeadlineSeconds = try integer(registryDeadlineRange, unit: "seconds")
            case .maxCopiedBytesPerBuild:
                let expected = "a whole number of bytes from \(copiedBytesRange.lowerBound) to \(copiedBytesRange.upperBound)"
                guard let value = Int64(try text(expected).trimmingCharacters(in: .whitespaces)),
                    copiedBytesRange.contains(value)
                else { throw invalid(expected) }
                settings.maxCopiedBytesPerBuild = value
            case .retentionDays:
                settings.retentionDays = try integer(retentionDaysRange, unit: "days (0 keeps logs and events forever)")
            case .contextRetentionHours:
                settings.contextRetentionHours = try integer(
                    contextRetentionHoursRange, unit: "hours (0 keeps contexts forever)")
            case .retentionIntervalSeconds:
                settings.retentionIntervalSeconds = try integer(retentionIntervalRange, unit: "seconds")
            case .idleTimeoutSeconds:
                settings.idleTimeoutSeconds = try integer(idleTimeoutRange, unit: "seconds")
            case .tlsHandshakeTimeoutSeconds:
                settings.tlsHandshakeTimeoutSeconds = try integer(tlsHandshakeTimeoutRange, unit: "seconds")
            case .maxConnections:
                settings.maxConnections = try integer(maxConnectionsRange, unit: "connections")
            case .stagingRepositories:
                let expected =
                    "a list of repository patterns REGISTRY/PATH, * for one path component, e.g. ghcr.io/team/staging/*"
                let items: [String]
                switch raw {
                case .null: items = []
                case .list(let list): items = list
                default: throw invalid(expected)
                }
                settings.stagingRepositories = try items.map { item in
                    do { return try RepositoryPattern(parsing: item) } catch let error as RegistryPatternError {
                        throw CoordinatorSettingsError.invalidValue(source: source, value: item, expected: error.reason)
                    }
                }
            case .maxQueuedBuildsPerToken:
                settings.maxQueuedBuildsPerToken = try integer(queuedBuildsRange, unit: "builds")
            case .maxPlatformsPerBuild:
                settings.maxPlatformsPerBuild = try integer(platformsPerBuildRange, unit: "platforms")
            case .maxStreamsPerToken:
                settings.maxStreamsPerToken = try integer(streamsPerTokenRange, unit: "streams")
            case .authFailuresPerMinute:
                settings.authFailuresPerMinute = try integer(authFailuresRange, unit: "failed authentications")
            case .databaseURL:
                let expected =
                    "a postgres://USER@HOST:PORT/DATABASE URL without a password (the password goes in "
                    + "database_password_file or MANIFOLD_DATABASE_PASSWORD), or null for the embedded SQLite database"
                if case .null = raw {
                    settings.databaseURL = nil
                } else {
                    let value = try text(expected).trimmingCharacters(in: .whitespaces)
                    guard let url = URLComponents(string: value), ["postgres", "postgresql"].contains(url.scheme ?? ""),
                        url.host.map({ !$0.isEmpty }) == true
                    else { throw invalid(expected) }
                    guard url.password == nil else {
                        var shown = url
                        shown.password = "REDACTED"
                        throw CoordinatorSettingsError.invalidValue(
                            source: source, value: shown.string ?? "a URL with a password", expected: expected)
                    }
                    settings.databaseURL = value.isEmpty ? nil : value
                }
            case .databasePasswordFile:
                if case .null = raw {
                    settings.databasePasswordFile = nil
                } else {
                    let value = try text("the path of a file holding the database password")
                    settings.databasePasswordFile = value.isEmpty ? nil : value
                }
            case .databasePoolSize:
                settings.databasePoolSize = try integer(databasePoolRange, unit: "connections")
            case .otlpTracesEndpoint:
                let expected = "an http:// or https:// OTLP traces URL, e.g. https://collector.example:4318/v1/traces"
                if case .null = raw {
                    settings.otlpTracesEndpoint = nil
                } else {
                    let value = try text(expected).trimmingCharacters(in: .whitespaces)
                    if value.isEmpty {
                        settings.otlpTracesEndpoint = nil
                    } else {
                        guard let url = URLComponents(string: value), ["http", "https"].contains(url.scheme ?? ""),
                            url.host.map({ !$0.isEmpty }) == true, url.password == nil
                        else { throw invalid(expected) }
                        settings.otlpTracesEndpoint = value
                    }
                }
            case .otlpTracesProtocol:
                let value = try text("http/protobuf or http/json")
                guard CoordinatorSettings.otlpTracesProtocols.contains(value) else {
                    throw invalid("http/protobuf or http/json")
                }
                settings.otlpTracesProtocol = value
            }
            sources[key] = source
        }

        func checkConsistency() throws {
            if settings.heartbeatIntervalSeconds >= settings.leaseTTLSeconds {
                throw CoordinatorSettingsError.inconsistent(
                    "heartbeat_interval_seconds (\(settings.heartbeatIntervalSeconds), from "
                        + "\(source(of: .heartbeatIntervalSeconds))) must be less than lease_ttl_seconds "
                        + "(\(settings.leaseTTLSeconds), from \(source(of: .leaseTTLSeconds))), "
                        + "or every lease would expire between heartbeats; a third of the TTL or less is typical.")
            }
        }
    }
}

// MARK: - Value parsing

extension CoordinatorSettings {
    static func parseBool(_ text: String, source: SettingSource) throws -> Bool {
        switch text.trimmingCharacters(in: .whitespaces).lowercased() {
        case "true", "yes", "on", "1": return true
        case "false", "no", "off", "0": return false
        default:
            throw CoordinatorSettingsError.invalidValue(
                source: source, value: text, expected: "a boolean: true or false (also yes/no, on/off, 1/0)")
        }
    }

    struct ListenProblem: Error {
        var message: String
    }

    /// Splits and checks `HOST:PORT`; IPv6 hosts must be bracketed.
    static func parseListen(_ text: String) throws -> (host: String, port: Int) {
        let host: String
        let portText: Substring
        if text.hasPrefix("[") {
            guard let close = text.firstIndex(of: "]") else {
                throw ListenProblem(message: "the IPv6 address has no closing ']'")
            }
            host = String(text[text.index(after: text.startIndex)..<close])
            let rest = text[text.index(after: close)...]
            guard rest.hasPrefix(":") else { throw ListenProblem(message: "a port is required after ']'") }
            portText = rest.dropFirst()
            guard let bytes = IPAddress.parse(host), bytes.count == 16 else {
                throw ListenProblem(message: "\"\(host)\" is not an IPv6 address")
            }
        } else {
            guard let colon = text.lastIndex(of: ":") else {
                throw ListenProblem(message: "a port is required")
            }
            host = String(text[..<colon])
            portText = text[text.index(after: colon)...]
            if host.contains(":") {
                throw ListenProblem(message: "an IPv6 host must be written in brackets, e.g. [\(host)]:\(portText)")
            }
            if host.isEmpty {
                throw ListenProblem(message: "a host is required (0.0.0.0 for every IPv4 interface, [::] for all)")
            }
            if IPAddress.parseIPv4(host) == nil {
                let looksNumeric = host.allSatisfy { $0.isNumber || $0 == "." }
                if looksNumeric || ServerNames.problem(withDNSName: host.lowercased()) != nil {
                    throw ListenProblem(message: "\"\(host)\" is not an IPv4 address or a host name")
                }
            }
        }
        // Port 0 asks the system for any free port (the coordinator logs the one it got).
        guard let port = Int(portText), (0...65_535).contains(port), portText.allSatisfy(\.isASCII) else {
            throw ListenProblem(message: "\"\(portText)\" is not a port from 0 to 65535")
        }
        return (host, port)
    }

    /// An http(s) URL with a host and nothing after the authority but an optional `/`; returned without the
    /// trailing slash, or nil.
    static func normalisePublicURL(_ text: String) -> String? {
        guard let components = URLComponents(string: text),
            let scheme = components.scheme?.lowercased(), scheme == "https" || scheme == "http",
            let host = components.host, !host.isEmpty,
            components.query == nil, components.fragment == nil, components.user == nil,
            components.path.isEmpty || components.path == "/"
        else { return nil }
        if let port = components.port, !(1...65_535).contains(port) { return nil }
        return text.hasSuffix("/") ? String(text.dropLast()) : text
    }

    /// `HOST` or `HOST:PORT` as docker and containerd name registries.
    static func isRegistryHost(_ text: String) -> Bool {
        guard !text.isEmpty, !text.contains("/"), !text.contains(" ") else { return false }
        let host: Substring
        let port: Substring?
        if text.hasPrefix("[") {
            guard let close = text.firstIndex(of: "]") else { return false }
            guard IPAddress.parse(String(text[text.index(after: text.startIndex)..<close]))?.count == 16 else {
                return false
            }
            let rest = text[text.index(after: close)...]
            guard rest.isEmpty || rest.hasPrefix(":") else { return false }
            host = text[...close]
            port = rest.isEmpty ? nil : rest.dropFirst()
        } else if let colon = text.firstIndex(of: ":") {
            host = text[..<colon]
            port = text[text.index(after: colon)...]
        } else {
            host = text[...]
            port = nil
        }
        if let port {
            guard let number = Int(port), (1...65_535).contains(number) else { return false }
        }
        if host.hasPrefix("[") { return true }
        return IPAddress.parseIPv4(String(host)) != nil || ServerNames.problem(withDNSName: host.lowercased()) == nil
    }
}
