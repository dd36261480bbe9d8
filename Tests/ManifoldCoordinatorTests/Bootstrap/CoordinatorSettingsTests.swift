import Foundation
import ManifoldStore
import Testing

@testable import ManifoldCoordinator

@Suite("Coordinator settings")
struct CoordinatorSettingsTests {
    /// Writes `yaml` to a config file in a fresh directory and resolves it with `environment` and `flags`.
    func resolve(
        file yaml: String?, environment: [String: String] = [:], flags: [String: String] = [:]
    ) throws -> CoordinatorSettings {
        let scratch = try BootstrapScratchDirectory()
        defer { scratch.remove() }
        let url = scratch.url.appendingPathComponent("manifold.yaml")
        if let yaml { try Data(yaml.utf8).write(to: url) }
        return try CoordinatorSettings.resolve(configFile: url, environment: environment, flags: flags)
    }

    /// The message of the error `body` throws, or a failed expectation.
    func message(_ body: () throws -> CoordinatorSettings) -> String {
        do {
            let settings = try body()
            Issue.record("expected an error, got \(settings)")
            return ""
        } catch {
            return "\(error)"
        }
    }

    @Test func defaultsWithoutFileEnvironmentOrFlags() throws {
        #expect(try CoordinatorSettings.resolve(configFile: nil, environment: [:], flags: [:]) == .defaults)
        #expect(try resolve(file: nil) == .defaults)
        #expect(try resolve(file: "") == .defaults)
        #expect(try resolve(file: "# only a comment\n") == .defaults)
        let defaults = CoordinatorSettings.defaults
        #expect(defaults.listen == "0.0.0.0:7443")
        #expect(defaults.tls)
        #expect(defaults.logLevel == "info")
        #expect(defaults.leaseTTLSeconds == 60)
        #expect(defaults.heartbeatIntervalSeconds == 10)
        #expect(defaults.pollTimeoutSeconds == 30)
        #expect(defaults.defaultMaxAttempts == 3)
        #expect(defaults.childTagTemplate == "{tag}-{os}-{arch}{-variant}")
        #expect(defaults.maxRequestBodyBytes == 1_048_576)
        #expect(defaults.maxContextBytes == 2_147_483_648)
    }

    @Test func precedenceIsFlagsOverEnvironmentOverFileOverDefaults() throws {
        let file = """
            listen: 127.0.0.1:9000
            lease_ttl_seconds: 120
            poll_timeout_seconds: 20
            log_level: debug
            """
        let environment = [
            "MANIFOLD_LEASE_TTL_SECONDS": "90",
            "MANIFOLD_POLL_TIMEOUT_SECONDS": "25",
            "MANIFOLD_UNRELATED": "ignored",
        ]
        let flags = ["poll_timeout_seconds": "40"]

        // Each row: which layers are present → the value of each setting.
        let fileOnly = try resolve(file: file)
        #expect(fileOnly.listen == "127.0.0.1:9000")
        #expect(fileOnly.leaseTTLSeconds == 120)
        #expect(fileOnly.pollTimeoutSeconds == 20)
        #expect(fileOnly.heartbeatIntervalSeconds == 10)  // default

        let withEnvironment = try resolve(file: file, environment: environment)
        #expect(withEnvironment.listen == "127.0.0.1:9000")  // file
        #expect(withEnvironment.leaseTTLSeconds == 90)  // env over file
        #expect(withEnvironment.pollTimeoutSeconds == 25)  // env over file
        #expect(withEnvironment.logLevel == "debug")  // file

        let all = try resolve(file: file, environment: environment, flags: flags)
        #expect(all.pollTimeoutSeconds == 40)  // flag over env over file
        #expect(all.leaseTTLSeconds == 90)  // env
        #expect(all.listen == "127.0.0.1:9000")  // file
        #expect(all.defaultMaxAttempts == 3)  // default

        let flagSpellings = try resolve(file: nil, flags: ["--lease-ttl-seconds": "30", "public-url": "https://c.example"])
        #expect(flagSpellings.leaseTTLSeconds == 30)
        #expect(flagSpellings.publicURL == "https://c.example")
    }

    @Test func everyKeyFromTheEnvironment() throws {
        let settings = try resolve(
            file: nil,
            environment: [
                "MANIFOLD_LISTEN": "[::]:8443",
                "MANIFOLD_TLS": "false",
                "MANIFOLD_PUBLIC_URL": "https://coord.example:8443/",
                "MANIFOLD_LOG_LEVEL": "WARNING",
                "MANIFOLD_LEASE_TTL_SECONDS": "30",
                "MANIFOLD_HEARTBEAT_INTERVAL_SECONDS": "5",
                "MANIFOLD_POLL_TIMEOUT_SECONDS": "15",
                "MANIFOLD_DEFAULT_MAX_ATTEMPTS": "5",
                "MANIFOLD_CHILD_TAG_TEMPLATE": "{tag}_{os}_{arch}_{variant}",
                "MANIFOLD_MAX_REQUEST_BODY_BYTES": "65536",
                "MANIFOLD_MAX_CONTEXT_BYTES": "10737418240",
                "MANIFOLD_INSECURE_REGISTRIES": "localhost:5000, registry.local",
                "MANIFOLD_REGISTRY_CAS": "registry.internal:5000=/etc/ca.pem,[2001:db8::1]:5000=/etc/v6.pem",
                "MANIFOLD_RETENTION_DAYS": "7",
                "MANIFOLD_CONTEXT_RETENTION_HOURS": "0",
                "MANIFOLD_RETENTION_INTERVAL_SECONDS": "30",
            ])
        #expect(settings.listen == "[::]:8443")
        #expect(settings.listenAddress == ("::", 8443))
        #expect(!settings.tls)
        #expect(settings.publicURL == "https://coord.example:8443")
        #expect(settings.logLevel == "warning")
        #expect(settings.loggerLevel == .warning)
        #expect(settings.leaseTTLSeconds == 30)
        #expect(settings.heartbeatIntervalSeconds == 5)
        #expect(settings.pollTimeoutSeconds == 15)
        #expect(settings.defaultMaxAttempts == 5)
        #expect(settings.childTagTemplate == "{tag}_{os}_{arch}_{variant}")
        #expect(settings.maxRequestBodyBytes == 65_536)
        #expect(settings.maxContextBytes == 10_737_418_240)
        #expect(settings.insecureRegistries == ["localhost:5000", "registry.local"])
        #expect(settings.registryCAs == ["registry.internal:5000": "/etc/ca.pem", "[2001:db8::1]:5000": "/etc/v6.pem"])
        #expect(settings.retentionDays == 7)
        #expect(settings.contextRetentionHours == 0)
        #expect(settings.retentionIntervalSeconds == 30)
        // 0 keeps forever; the policy says so with nil.
        #expect(settings.retentionPolicy == RetentionPolicy(logRetention: 7 * 86_400, contextRetention: nil))
        #expect(
            CoordinatorSettings.defaults.retentionPolicy == RetentionPolicy(logRetention: 30 * 86_400, contextRetention: 86_400))
    }

    @Test func theDatabaseIsPostgreSQLOnlyWhenNamedAndNeverWithAPasswordInTheURL() throws {
        #expect(try resolve(file: nil).databaseURL == nil)
        let fromFile = try resolve(
            file: """
                database_url: postgres://manifold@db.example:5432/manifold?sslmode=verify-full
                database_password_file: /etc/manifold/db-password
                database_pool_size: 12
                """)
        #expect(fromFile.databaseURL == "postgres://manifold@db.example:5432/manifold?sslmode=verify-full")
        #expect(fromFile.databasePasswordFile == "/etc/manifold/db-password")
        #expect(fromFile.databasePoolSize == 12)
        let fromEnvironment = try resolve(
            file: nil, environment: ["MANIFOLD_DATABASE_URL": "postgresql://m@127.0.0.1:6543/m"])
        #expect(fromEnvironment.databaseURL == "postgresql://m@127.0.0.1:6543/m")

        #expect {
            try resolve(file: "database_url: postgres://manifold:hunter2@db.example/manifold")
        } throws: { error in
            let text = "\(error)"
            return !text.contains("hunter2") && text.contains("REDACTED") && text.contains("database_password_file")
        }
        #expect {
            try resolve(file: "database_url: mysql://manifold@db.example/manifold")
        } throws: { error in "\(error)".contains("mysql://manifold@db.example/manifold") && "\(error)".contains("postgres://") }
        #expect { try resolve(file: "database_pool_size: 0") } throws: { error in "\(error)".contains("1 to 500") }
    }

    @Test func plainHTTPOnlyWhenAskedFor() throws {
        #expect(try resolve(file: nil).tls)
        #expect(try !resolve(file: nil, flags: ["insecure_plain_http": "true"]).tls)
        #expect(try !resolve(file: nil, flags: ["--insecure-plain-http": "true"]).tls)
        #expect(try !resolve(file: nil, environment: ["MANIFOLD_INSECURE_PLAIN_HTTP": "true"]).tls)
        #expect(try !resolve(file: "tls: false\n").tls)
        // A flag turns TLS back on over the file.
        #expect(try resolve(file: "tls: false\n", flags: ["tls": "true"]).tls)
        // Contradicting switches at the same level are an error, not a guess.
        let contradiction = message {
            try resolve(file: nil, environment: ["MANIFOLD_TLS": "true", "MANIFOLD_INSECURE_PLAIN_HTTP": "true"])
        }
        #expect(contradiction.contains("MANIFOLD_INSECURE_PLAIN_HTTP"))
        #expect(contradiction.contains("MANIFOLD_TLS"))
    }

    @Test func aPollTimeoutAgentsWouldGiveUpOnIsRefused() throws {
        #expect(try resolve(file: "poll_timeout_seconds: 60\n").pollTimeoutSeconds == 60)
        let text = message { try resolve(file: "poll_timeout_seconds: 90\n") }
        #expect(text.contains("90"), "\(text)")
        #expect(text.contains("from 1 to 60"), "\(text)")
        #expect(text.contains("agents give up on a silent request after 75"), "\(text)")
    }

    @Test func badPort() {
        for listen in ["0.0.0.0:99999", "0.0.0.0:-1", "0.0.0.0:http", "0.0.0.0", "0.0.0.0:"] {
            let text = message { try resolve(file: nil, flags: ["listen": listen]) }
            #expect(text.contains("\"\(listen)\""), "\(text)")
            #expect(text.contains("flag --listen"), "\(text)")
            #expect(text.contains("port"), "\(text)")
        }
    }

    @Test func badListenHost() {
        let cases = [
            "::1:7443": "brackets",
            "[::1:7443": "closing ']'",
            "[1.2.3.4]:7443": "not an IPv6 address",
            "300.1.1.1:7443": "not an IPv4 address",
            "bad host:7443": "not an IPv4 address or a host name",
            ":7443": "a host is required",
        ]
        for (listen, reason) in cases {
            let text = message { try resolve(file: nil, environment: ["MANIFOLD_LISTEN": listen]) }
            #expect(text.contains("\"\(listen)\""), "\(text)")
            #expect(text.contains("environment variable MANIFOLD_LISTEN"), "\(text)")
            #expect(text.contains(reason), "\(listen): \(text)")
        }
        #expect((try? resolve(file: nil, flags: ["listen": "coord.example:7443"]))?.listen == "coord.example:7443")
    }

    @Test func negativeLeaseTTLNamesTheFileKeyAndLine() {
        let text = message { try resolve(file: "listen: 0.0.0.0:7443\nlease_ttl_seconds: -5\n") }
        #expect(text.contains("\"-5\""), "\(text)")
        #expect(text.contains("manifold.yaml line 2, key lease_ttl_seconds"), "\(text)")
        #expect(text.contains("a whole number of seconds from 5 to 86400"), "\(text)")
    }

    @Test func heartbeatMustBeShorterThanTheLease() {
        let text = message {
            try resolve(file: "heartbeat_interval_seconds: 60\n", environment: ["MANIFOLD_LEASE_TTL_SECONDS": "30"])
        }
        #expect(text.contains("heartbeat_interval_seconds (60"), "\(text)")
        #expect(text.contains("lease_ttl_seconds (30, from environment variable MANIFOLD_LEASE_TTL_SECONDS)"), "\(text)")
        #expect(message { try resolve(file: nil, flags: ["heartbeat_interval_seconds": "60"]) }.contains("less than"))
    }

    @Test func unknownKeyWithLineAndSuggestion() {
        let text = message { try resolve(file: "listen: 0.0.0.0:7443\n\nlease_ttl_secs: 30\n") }
        #expect(text.contains("Unknown key \"lease_ttl_secs\""), "\(text)")
        #expect(text.contains("line 3"), "\(text)")
        #expect(text.contains("Did you mean \"lease_ttl_seconds\"?"), "\(text)")
        let flag = message { try resolve(file: nil, flags: ["lisen": "0.0.0.0:1"]) }
        #expect(flag.contains("\"lisen\""), "\(flag)")
    }

    @Test func badBool() {
        let file = message { try resolve(file: "tls: maybe\n") }
        #expect(file.contains("\"maybe\""), "\(file)")
        #expect(file.contains("key tls"), "\(file)")
        #expect(file.contains("true or false"), "\(file)")
        let environment = message { try resolve(file: nil, environment: ["MANIFOLD_INSECURE_PLAIN_HTTP": "sure"]) }
        #expect(environment.contains("\"sure\" from environment variable MANIFOLD_INSECURE_PLAIN_HTTP"), "\(environment)")
    }

    @Test func badLogLevel() {
        let text = message { try resolve(file: nil, flags: ["log_level": "verbose"]) }
        #expect(text.contains("\"verbose\" from flag --log-level"), "\(text)")
        #expect(text.contains("trace, debug, info, notice, warning, error, critical"), "\(text)")
    }

    @Test func otherInvalidValues() {
        let cases: [(String, String)] = [
            ("public_url: ftp://coord.example\n", "http:// or https://"),
            ("public_url: https://coord.example/api\n", "no path"),
            ("child_tag_template: \"{tag}-{arch}\"\n", "{os}"),
            ("child_tag_template: \"{tag}-{os}-{arch}{-variant}{platform}\"\n", "only {…} placeholders"),
            ("max_request_body_bytes: 10\n", "from 1024"),
            ("max_context_bytes: lots\n", "whole number of bytes"),
            ("default_max_attempts: 0\n", "attempts from 1 to 100"),
            ("insecure_registries: [\"https://registry.local\"]\n", "without a scheme"),
            ("insecure_registries: registry.local\n", "a list of registry hosts"),
            ("registry_cas:\n  registry.local: relative/ca.pem\n", "absolute path"),
            ("listen: [a, b]\n", "HOST:PORT"),
            ("- listen\n", "mapping of settings"),
            ("listen: \"0.0.0.0:1\"\nlisten: \"0.0.0.0:2\"\n", "appears twice"),
            ("listen: {\n", "not valid YAML"),
            ("retention_days: -1\n", "0 keeps logs and events forever"),
            ("context_retention_hours: soon\n", "0 keeps contexts forever"),
            ("retention_interval_seconds: 1\n", "seconds from 10 to 86400"),
            ("log_format: logfmt\n", "text or json"),
        ]
        for (yaml, expected) in cases {
            let text = message { try resolve(file: yaml) }
            #expect(text.contains(expected), "\(yaml) → \(text)")
        }
    }

    @Test func yamlRoundTrips() throws {
        var custom = CoordinatorSettings.defaults
        custom.listen = "[::]:8443"
        custom.tls = false
        custom.publicURL = "https://coord.example:8443"
        custom.logLevel = "debug"
        custom.logFormat = .json
        custom.leaseTTLSeconds = 45
        custom.heartbeatIntervalSeconds = 15
        custom.pollTimeoutSeconds = 20
        custom.defaultMaxAttempts = 7
        custom.childTagTemplate = "{tag}.{os}.{arch}{-variant}.{osversion}"
        custom.maxRequestBodyBytes = 2_048
        custom.maxContextBytes = 1 << 32
        custom.insecureRegistries = ["localhost:5000", "[::1]:5001"]
        custom.registryCAs = ["registry.internal:5000": "/etc/manifold/ca \"one\".pem", "b.example": "/b.pem"]
        custom.retentionDays = 0
        custom.contextRetentionHours = 72
        custom.retentionIntervalSeconds = 60
        for settings in [CoordinatorSettings.defaults, custom] {
            let yaml = settings.yaml()
            #expect(try resolve(file: yaml) == settings, "\(yaml)")
            #expect(yaml.contains("# "))
        }
        // Every key is written (public_url as a commented example when unset) and documented.
        let defaultsYAML = CoordinatorSettings.defaults.yaml()
        for key in CoordinatorSettings.Key.allCases {
            #expect(defaultsYAML.contains("\(key.yamlKey):"), "\(key)")
        }
    }

    @Test func theExampleFileInTheRepositoryIsTheRenderedDefaults() throws {
        let example = URL(fileURLWithPath: #filePath)
            .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("coordinator/manifold.yaml.example")
        guard FileManager.default.fileExists(atPath: example.path) else {
            Issue.record("missing \(example.path)")
            return
        }
        #expect(try String(contentsOf: example, encoding: .utf8) == CoordinatorSettings.defaults.yaml())
        #expect(try CoordinatorSettings.resolve(configFile: example, environment: [:], flags: [:]) == .defaults)
    }
}
