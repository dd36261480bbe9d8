import ArgumentParser
import Foundation
import ManifoldRegistry

struct RegistryCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "registry",
        abstract: "Store or remove registry credentials (docker config.json format; honours DOCKER_CONFIG).",
        subcommands: [RegistryLogin.self, RegistryLogout.self]
    )
}

struct RegistryLogin: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "login",
        abstract: "Check credentials against a registry and store them.",
        discussion: """
            The password is read from standard input, never from a flag. Credentials go to the docker \
            config.json ($DOCKER_CONFIG/config.json or ~/.docker/config.json), through its credsStore when \
            one is configured.

            Example:
              echo "$REGISTRY_PASSWORD" | manifold registry login registry.local:5000 --username ci --password-stdin
            """
    )

    @Argument(
        help: ArgumentHelp(
            "Registry host, e.g. registry.local:5000 or docker.io (a URL such as https://registry.local:5000/ is accepted).",
            valueName: "host"))
    var host: String

    @Option(
        help: ArgumentHelp(
            "Store the credentials for a coordinator: in STATE_DIR/registry/config.json instead of your own docker config.",
            valueName: "dir"))
    var stateDir: String?

    @OptionGroup var registryOptions: RegistryOptions
    @OptionGroup var global: GlobalOptions

    func validate() throws {
        if registryOptions.username == nil {
            throw ValidationError("give --username USER and the password on stdin with --password-stdin")
        }
        if host.contains("/") && !host.contains("://") {
            throw ValidationError("\"\(host)\" is not a registry host: give HOST[:PORT] without a repository path")
        }
    }

    func run() async throws {
        // `https://host:5000/` and `HOST:5000` both mean `host:5000`.
        let registryHost = DockerConfig.normalizedKey(host)
        let configuration = try registryOptions.configuration(targetRegistry: registryHost)
        let username = registryOptions.username ?? ""
        guard case .basic(_, let password)? = try await configuration.credentials.credential(for: registryHost) else {
            throw ValidationError("no password was read from standard input")
        }
        // Check against the registry only with the new credentials, never with stored ones.
        var checking = configuration
        checking.credentials = StaticCredentials([
            DockerConfig.normalizedKey(registryHost): .basic(username: username, password: password)
        ])
        let registries = RegistryClientPool(configuration: checking, logger: global.makeLogger("manifold.registry"))
        defer { registries.shutdown() }
        try await registries.client(for: registryHost).ping()
        let config = stateDir.map { DockerConfig(file: Self.coordinatorConfigFile(stateDir: $0)) } ?? DockerConfig()
        try await config.store(username: username, password: password, for: registryHost)
        print("Login to \(registryHost) succeeded; credentials stored in \(config.file.path)")
    }
}

struct RegistryLogout: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "logout",
        abstract: "Remove stored credentials for a registry.",
        discussion: "Example:\n  manifold registry logout registry.local:5000"
    )

    @Argument(help: ArgumentHelp("Registry host.", valueName: "host"))
    var host: String

    @Option(help: ArgumentHelp("Remove the credentials a coordinator uses (STATE_DIR/registry/config.json).", valueName: "dir"))
    var stateDir: String?

    func run() async throws {
        let config = stateDir.map { DockerConfig(file: RegistryLogin.coordinatorConfigFile(stateDir: $0)) } ?? DockerConfig()
        if try await config.remove(for: DockerConfig.normalizedKey(host)) {
            print("Removed credentials for \(host) from \(config.file.path)")
        } else {
            print("No credentials for \(host) in \(config.file.path)")
        }
    }
}

extension RegistryLogin {
    /// Where a coordinator reads its own registry credentials.
    static func coordinatorConfigFile(stateDir: String) -> URL {
        URL(fileURLWithPath: stateDir).appendingPathComponent("registry/config.json")
    }
}
