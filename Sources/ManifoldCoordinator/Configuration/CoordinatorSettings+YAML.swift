import Foundation

extension CoordinatorSettings {
    /// Renders a documented config file (used by `manifold init` to write manifold.yaml), comments explaining
    /// each key.
    ///
    /// Reading the result back with ``resolve(configFile:environment:flags:)`` gives these settings again.
    public func yaml() -> String {
        let defaults = Self.defaults
        var lines: [String] = [
            "# Manifold coordinator settings.",
            "#",
            "# Precedence: command-line flags > environment variables > this file > built-in defaults.",
            "# Every key has an environment variable MANIFOLD_<KEY IN UPPER CASE>, e.g. MANIFOLD_LISTEN",
            "# (lists comma-separated, registry_cas as HOST=FILE pairs), and `manifold serve` flags such as",
            "# --listen override both. Unknown keys are errors, so a typo cannot go unnoticed.",
            "",
            "# Address and port to listen on: HOST:PORT, an IPv6 host in brackets (\"[::]:7443\").",
            "listen: \(Self.quoted(listen))",
            "",
            "# Serve HTTPS with the certificate in pki/server.crt. Set to false only behind a proxy that",
            "# terminates TLS (same as --insecure-plain-http or MANIFOLD_INSECURE_PLAIN_HTTP=true).",
            "tls: \(tls)",
            "",
            "# How agents and users reach this coordinator, e.g. https://coord.example:7443.",
        ]
        if let publicURL {
            lines.append("public_url: \(Self.quoted(publicURL))")
        } else {
            lines.append("# public_url: \"https://coord.example:7443\"")
        }
        lines += [
            "",
            "# Minimum log level: trace, debug, info, notice, warning, error or critical.",
            "log_level: \(logLevel)",
            "",
            "# Log lines as text, or json: one object a line with the time, level, message and fields such as build,",
            "# job, attempt and agent, for a log collector.",
            "log_format: \(logFormat.rawValue)",
            "",
            "# Seconds a job lease lasts without a heartbeat; then the attempt is lost and the job re-queued.",
            "lease_ttl_seconds: \(leaseTTLSeconds)",
            "",
            "# Seconds between agent heartbeats; must be less than lease_ttl_seconds (a third or less is typical).",
            "heartbeat_interval_seconds: \(heartbeatIntervalSeconds)",
            "",
            "# Seconds an agent's poll is held open waiting for a matching job (1 to 60: agents give up on a silent request",
            "# after 75 s).",
            "poll_timeout_seconds: \(pollTimeoutSeconds)",
            "",
            "# Attempts per platform job when a build does not set max attempts.",
            "default_max_attempts: \(defaultMaxAttempts)",
            "",
            "# Tag of each per-platform image, so registry retention never deletes a manifest list's children.",
            "# Placeholders: {tag} {os} {arch} {variant} {-variant} (\"-v8\" or empty) {osversion};",
            "# {tag}, {os}, {arch} and {variant} or {-variant} are required so every platform gets its own tag.",
            "# Default: \(defaults.childTagTemplate)",
            "child_tag_template: \(Self.quoted(childTagTemplate))",
            "",
            "# Largest JSON request body, in bytes (default \(defaults.maxRequestBodyBytes), 1 MiB).",
            "max_request_body_bytes: \(maxRequestBodyBytes)",
            "",
            "# Largest build context upload, in bytes (default \(defaults.maxContextBytes), 2 GiB).",
            "max_context_bytes: \(maxContextBytes)",
            "",
            "# Seconds before a failed job or list push is tried again; doubled each time, up to max_retry_backoff_seconds.",
            "# A registry outage never fails a build's publishing: it is retried until the registry is back.",
            "retry_backoff_seconds: \(retryBackoffSeconds)",
            "max_retry_backoff_seconds: \(maxRetryBackoffSeconds)",
            "",
            "# Most log bytes kept per attempt (default \(defaults.maxLogBytesPerAttempt), 64 MiB); later output is dropped.",
            "max_log_bytes_per_attempt: \(maxLogBytesPerAttempt)",
            "",
            "# The only registries builds may name and the coordinator contacts: HOST (any port), HOST:PORT or",
            "# *.DOMAIN (hosts below DOMAIN). Empty allows none: every submission is refused until one is listed.",
        ]
        if allowedRegistries.isEmpty {
            lines += ["allowed_registries: []", "#   - registry.example.com", "#   - \"*.corp.example\""]
        } else {
            lines.append("allowed_registries:")
            lines += allowedRegistries.map { "  - \(Self.quoted($0.description))" }
        }
        lines += [
            "",
            "# Registries (HOST or HOST:PORT) reached over plain HTTP instead of HTTPS.",
        ]
        if insecureRegistries.isEmpty {
            lines += ["insecure_registries: []", "#   - registry.local:5000"]
        } else {
            lines.append("insecure_registries:")
            lines += insecureRegistries.map { "  - \(Self.quoted($0))" }
        }
        lines += ["", "# Extra CA certificates (PEM files) to trust for a registry: HOST[:PORT]: /path/to/ca.pem"]
        if registryCAs.isEmpty {
            lines += ["registry_cas: {}", "#   registry.internal:5000: /etc/manifold/registry-ca.pem"]
        } else {
            lines.append("registry_cas:")
            lines += registryCAs.sorted { $0.key < $1.key }.map { "  \(Self.quoted($0.key)): \(Self.quoted($0.value))" }
        }
        lines += [
            "",
            "# Verifications and list pushes run concurrently, at most this many at once against one registry, each",
            "# cancelled and retried later after registry_deadline_seconds, so a registry that does not answer never",
            "# holds up builds on other registries. Allow enough time to copy max_copied_bytes_per_build.",
            "registry_concurrency: \(registryConcurrency)",
            "registry_deadline_seconds: \(registryDeadlineSeconds)",
            "",
            "# Most blob bytes one verification or list push copies through the coordinator from another registry",
            "# (default \(defaults.maxCopiedBytesPerBuild), 10 GiB); a larger copy fails with a message saying so.",
            "max_copied_bytes_per_build: \(maxCopiedBytesPerBuild)",
        ]
        lines += [
            "",
            "# Retention, so the state directory does not grow forever. A finished build's logs and events are",
            "# deleted retention_days after it finished (one build.pruned event says so; the build's state, digests",
            "# and list stay), an attempt's log retention_days after the attempt ended. 0 keeps them forever.",
            "# Default: \(defaults.retentionDays)",
            "retention_days: \(retentionDays)",
            "",
            "# An uploaded context is deleted once no unfinished build uses it and it was last used (uploaded,",
            "# submitted, downloaded by an agent) more than this many hours ago. 0 keeps contexts forever.",
            "# Default: \(defaults.contextRetentionHours)",
            "context_retention_hours: \(contextRetentionHours)",
            "",
            "# Seconds between retention runs; each deletes in transactions of at most 500 rows.",
            "retention_interval_seconds: \(retentionIntervalSeconds)",
            "",
            "# Connection limits against clients that hold connections without using them. A connection is closed when",
            "# it has not sent a complete request head for idle_timeout_seconds (counted from its start or its last",
            "# response; headers trickled byte by byte count as idle) or stalls a request body that long. Held polls",
            "# and event streams are requests in progress, never idle. Default: \(defaults.idleTimeoutSeconds)",
            "idle_timeout_seconds: \(idleTimeoutSeconds)",
            "# Seconds a client has to finish the TLS handshake. Default: \(defaults.tlsHandshakeTimeoutSeconds)",
            "tls_handshake_timeout_seconds: \(tlsHandshakeTimeoutSeconds)",
            "# Most connections open at once; past it new connections wait in the kernel's accept queue (256) until",
            "# one closes, and the kernel refuses connections beyond that. Default: \(defaults.maxConnections)",
            "max_connections: \(maxConnections)",
            "# Repositories besides a build's own where an agent may report its built image (REGISTRY/PATH, * for one",
            "# path component, a final /** for any depth). A report naming any other image is refused. Default: none.",
        ]
        if stagingRepositories.isEmpty {
            lines += ["staging_repositories: []", "#   - \"registry.example.com/staging/*\""]
        } else {
            lines.append("staging_repositories:")
            lines += stagingRepositories.map { "  - \(Self.quoted($0.description))" }
        }
        lines += [
            "",
            "# Limits against abuse. Unfinished builds per token (more: 429), platforms per build (more: 400), event",
            "# streams and log follows open at once per token (more: 429), and failed authentications per client",
            "# address and minute (more: 429 with Retry-After until the minute is over).",
            "max_queued_builds_per_token: \(maxQueuedBuildsPerToken)",
            "max_platforms_per_build: \(maxPlatformsPerBuild)",
            "max_streams_per_token: \(maxStreamsPerToken)",
            "auth_failures_per_minute: \(authFailuresPerMinute)",
        ]
        lines += [
            "",
            "# The PostgreSQL database that replicas share: postgres://USER@HOST:PORT/DATABASE[?sslmode=verify-full&sslrootcert=FILE].",
            "# Without it, the embedded SQLite database in this directory. Never put the password here or in the URL:",
            "# it comes from database_password_file or the MANIFOLD_DATABASE_PASSWORD environment variable.",
        ]
        if let databaseURL {
            lines.append("database_url: \(Self.quoted(databaseURL))")
        } else {
            lines.append("# database_url: \"postgres://manifold@db.example:5432/manifold?sslmode=verify-full\"")
        }
        if let databasePasswordFile {
            lines.append("database_password_file: \(Self.quoted(databasePasswordFile))")
        } else {
            lines.append("# database_password_file: /etc/manifold/database-password")
        }
        lines += [
            "# Connections each replica keeps to PostgreSQL (it uses one more to listen for the other replicas'",
            "# wake-ups): keep replicas × (database_pool_size + 1) below the server's max_connections.",
            "database_pool_size: \(databasePoolSize)",
            "",
            "# Tracing (OpenTelemetry): off unless a collector is named here or in OTEL_EXPORTER_OTLP_ENDPOINT. Each build",
            "# is one trace (build, dispatch, verify, publish, registry calls, the agent's phases), sent over OTLP/HTTP.",
        ]
        if let otlpTracesEndpoint {
            lines.append("otlp_traces_endpoint: \(Self.quoted(otlpTracesEndpoint))")
        } else {
            lines.append("# otlp_traces_endpoint: \"https://collector.example:4318/v1/traces\"")
        }
        lines.append("otlp_traces_protocol: \(otlpTracesProtocol)")
        return lines.joined(separator: "\n") + "\n"
    }

    /// A YAML double-quoted scalar.
    static func quoted(_ text: String) -> String {
        var result = "\""
        for scalar in text.unicodeScalars {
            switch scalar {
            case "\"": result += "\\\""
            case "\\": result += "\\\\"
            case "\n": result += "\\n"
            case "\t": result += "\\t"
            default:
                if scalar.value < 0x20 || scalar.value == 0x7F {
                    result += String(format: "\\x%02X", scalar.value)
                } else {
                    result.unicodeScalars.append(scalar)
                }
            }
        }
        return result + "\""
    }
}
