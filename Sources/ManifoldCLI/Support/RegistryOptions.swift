import ArgumentParser
import Foundation
import ManifoldRegistry

/// How to reach registries: plain HTTP hosts, extra CAs, explicit credentials.
struct RegistryOptions: ParsableArguments {
    @Option(
        name: .customLong("insecure-registry"),
        help: ArgumentHelp("Talk plain HTTP to this registry (HOST[:PORT]). Repeatable.", valueName: "host"))
    var plainHTTPHosts: [String] = []

    @Option(
        name: .customLong("registry-ca"),
        help: ArgumentHelp(
            "Trust this CA certificate (PEM) for a registry, in addition to /etc/docker/certs.d and "
                + "/etc/containers/certs.d. Repeatable.", valueName: "host=file"))
    var registryCAs: [String] = []

    @Option(
        name: .customLong("tls-skip-verify"),
        help: ArgumentHelp("Do not verify this registry's TLS certificate. Unsafe; for tests only.", valueName: "host"))
    var skipVerifyHosts: [String] = []

    @Option(
        name: .customLong("certs-dir"),
        help: ArgumentHelp(
            "Look for HOST[:PORT]/ca.crt and client.cert/.key here instead of the system certs.d trees.",
            valueName: "dir"))
    var certsDirectories: [String] = []

    @Option(help: ArgumentHelp("Username for the target registry (instead of the docker config.json).", valueName: "user"))
    var username: String?

    @Flag(help: "Read the target registry's password from standard input (with --username).")
    var passwordStdin = false

    @Option(help: ArgumentHelp("Attempts for each registry request on 408/429/5xx and connection errors.", valueName: "n"))
    var retries: Int = 4

    func validate() throws {
        if passwordStdin && username == nil { throw ValidationError("--password-stdin needs --username") }
        if username != nil && !passwordStdin {
            throw ValidationError("--username needs --password-stdin (passwords are never taken as flags)")
        }
        if retries < 1 { throw ValidationError("--retries must be at least 1, got \(retries)") }
        for value in registryCAs {
            do { _ = try RegistryConfiguration.parseCAFlag(value) } catch { throw ValidationError("\(error)") }
        }
    }

    /// The registry configuration these flags describe; `targetRegistry` receives the explicit credentials.
    func configuration(targetRegistry: String?) throws -> RegistryConfiguration {
        var caFiles: [String: [String]] = [:]
        for value in registryCAs {
            let (host, file) = try RegistryConfiguration.parseCAFlag(value)
            caFiles[host, default: []].append(file)
        }
        var providers: [any CredentialProvider] = []
        if let username, let targetRegistry {
            let password = readLine(strippingNewline: true) ?? ""
            guard !password.isEmpty else { throw ValidationError("--password-stdin was given but standard input is empty") }
            providers.append(
                StaticCredentials([DockerConfig.normalizedKey(targetRegistry): .basic(username: username, password: password)]))
        }
        providers.append(DockerConfig())
        return RegistryConfiguration(
            plainHTTPHosts: Set(plainHTTPHosts),
            caFiles: caFiles,
            certsDirectories: certsDirectories.isEmpty
                ? RegistryConfiguration.defaultCertsDirectories : certsDirectories.map { URL(fileURLWithPath: $0) },
            insecureSkipVerifyHosts: Set(skipVerifyHosts),
            credentials: ChainedCredentials(providers),
            retry: RetryPolicy(maxAttempts: retries)
        )
    }
}

/// `text` for people, `json` for scripts.
enum OutputFormat: String, ExpressibleByArgument, CaseIterable {
    case text, json
}
