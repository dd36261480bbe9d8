import ArgumentParser
import Foundation
import ManifoldAPI
import ManifoldCLI
import ManifoldCoordinator

/// `manifold init`: creates a coordinator's state directory.
public struct InitCommand: AsyncParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "init",
        abstract: "Create a coordinator state directory: config, CA and server certificate, database, first tokens.",
        discussion: """
            Prints the CA's SHA-256 fingerprint (agents pin it), an admin token and an agent join token. \
            Tokens are shown once and stored only as hashes. The join token joins agents into the `default` pool \
            (no labels imposed, every platform allowed); it works for 24 hours and 10 agents unless \
            --join-token-hours / --join-token-uses say otherwise. Later join tokens: `manifold token create --role join`. Refuses to touch an existing, non-empty directory.
            Also stores an admin context for you ($XDG_CONFIG_HOME/manifold, default ~/.config/manifold) that \
            reaches this coordinator on this host, so `manifold build …` works right away; an existing context \
            of that name is never replaced.

            Examples:
              manifold init --state-dir /var/lib/manifold --host coordinator.example.com --allow-registry ghcr.io
              manifold init --state-dir /srv/manifold --context-name staging
              manifold init --state-dir /var/lib/manifold --no-context
            """)

    @Option(help: ArgumentHelp("Directory for the coordinator's state.", valueName: "dir"))
    var stateDir: String

    @Option(
        name: .customLong("host"),
        help: ArgumentHelp(
            "Name or IP address agents and users reach the coordinator by (repeatable); localhost, 127.0.0.1 and ::1 are always included.",
            valueName: "name-or-ip"))
    var hosts: [String] = []

    @Option(help: ArgumentHelp("Address to listen on, written to the config file.", valueName: "host:port"))
    var listen: String?

    @Option(
        name: .customLong("allow-registry"),
        help: ArgumentHelp(
            "A registry builds may push to and the coordinator may reach: HOST, HOST:PORT or *.DOMAIN (repeatable; written to allowed_registries).",
            valueName: "registry"))
    var allowedRegistries: [String] = []

    @Option(help: ArgumentHelp("How many agents the printed join token may join (1–10000).", valueName: "n"))
    var joinTokenUses = Coordinator.defaultInitialJoinTokenUses

    @Option(help: ArgumentHelp("Hours the printed join token works (1–8784).", valueName: "hours"))
    var joinTokenHours = Int(Coordinator.defaultInitialJoinTokenLifetime / 3600)

    @Option(
        help: ArgumentHelp(
            "The PostgreSQL database replicas share, postgres://USER@HOST:PORT/DB (password from --database-password-file "
                + "or MANIFOLD_DATABASE_PASSWORD); written to the config file. Default: the embedded SQLite database.",
            valueName: "url"))
    var database: String?

    @Option(help: ArgumentHelp("A file holding the database password (first line).", valueName: "path"))
    var databasePasswordFile: String?

    @Flag(help: "Write a config that serves plain HTTP (only behind a TLS-terminating proxy).")
    var insecurePlainHttp = false

    @Option(help: ArgumentHelp("Name of the admin context stored for you.", valueName: "name"))
    var contextName = "default"

    @Flag(help: "Do not store an admin context for the local user.")
    var noContext = false

    public init() {}

    public func validate() throws {
        guard (1...10_000).contains(joinTokenUses) else {
            throw ValidationError("--join-token-uses \(joinTokenUses) must be 1…10000")
        }
        guard (1...8_784).contains(joinTokenHours) else {
            throw ValidationError("--join-token-hours \(joinTokenHours) must be 1…8784 (a year)")
        }
    }

    public func run() async throws {
        let state = StateDirectory(URL(fileURLWithPath: stateDir).standardizedFileURL)
        var flags: [String: String] = [:]
        if let listen { flags["listen"] = listen }
        if insecurePlainHttp { flags["insecure_plain_http"] = "true" }
        if !allowedRegistries.isEmpty { flags["allowed_registries"] = allowedRegistries.joined(separator: ",") }
        if let database { flags["database_url"] = database }
        if let databasePasswordFile { flags["database_password_file"] = databasePasswordFile }
        let settings: CoordinatorSettings
        do {
            settings = try CoordinatorSettings.resolve(configFile: nil, environment: [:], flags: flags)
        } catch {
            throw ValidationError("\(error)")
        }
        let existed = FileManager.default.fileExists(atPath: state.root.path)
        try state.create()
        do {
            let result = try await Coordinator.initialise(
                state: state, settings: settings, hosts: hosts, joinTokenUses: joinTokenUses,
                joinTokenLifetime: TimeInterval(joinTokenHours) * 3600)
            let contextNote = noContext ? "" : storeContext(result, state: state, settings: settings)
            print(
                """
                Initialised \(state.root.path)

                CA fingerprint (agents pin it with --ca-fingerprint):
                  \(result.caFingerprint)

                Admin token (shown once; keep it safe):
                  \(result.adminToken)

                Agent join token (shown once; pool "default", joins up to \(result.joinTokenUses) agent\(result.joinTokenUses == 1 ? "" : "s") until \(result.joinTokenExpiresAt.formatted(.iso8601))):
                  \(result.joinToken)

                \(contextNote)\(settings.allowedRegistries.isEmpty ? "No registry is allowed yet: list the ones builds may use under allowed_registries in \(state.configFile.path).\n\n" : "")
                Next:
                  manifold serve --state-dir \(state.root.path)
                  manifold-agent join https://\(hosts.first ?? "HOST"):\(settings.listenAddress.port) --token JOIN_TOKEN --ca-fingerprint \(result.caFingerprint) --state-dir /var/lib/manifold-agent
                """)
        } catch {
            // Nothing half-written stays behind.
            if existed {
                for item in (try? FileManager.default.contentsOfDirectory(at: state.root, includingPropertiesForKeys: nil)) ?? []
                {
                    try? FileManager.default.removeItem(at: item)
                }
            } else {
                try? FileManager.default.removeItem(at: state.root)
            }
            throw error
        }
    }

    /// Stores an admin context for this host unless one of that name exists; returns a paragraph for the output.
    func storeContext(_ result: Coordinator.Initialisation, state: StateDirectory, settings: CoordinatorSettings) -> String {
        let store = ContextStore()
        let (host, port) = settings.listenAddress
        // The certificate always names localhost; a wildcard listener is reached there.
        var reachable = ["0.0.0.0", "::", "[::]", ""].contains(host) ? "localhost" : host
        if reachable.contains(":") && !reachable.hasPrefix("[") { reachable = "[\(reachable)]" }
        let url = "\(settings.tls ? "https" : "http")://\(reachable):\(port)"
        do {
            if try store.list().contexts[contextName] != nil {
                return """
                    A context named "\(contextName)" already exists in \(store.file.path); it was not changed. Use this \
                    coordinator with:
                      manifold login \(url) --token ADMIN_TOKEN --ca-file \(state.caCertificate.path) --context NAME

                    """
            }
            let pem = settings.tls ? try Data(contentsOf: state.caCertificate) : nil
            try store.save(
                CoordinatorContext(
                    coordinator: url, token: result.adminToken, caFingerprint: settings.tls ? result.caFingerprint : nil),
                named: contextName, caPEM: pem, makeCurrent: false)
            let current = try store.list().current == contextName
            return """
                Admin context "\(contextName)" (\(url)) stored in \(store.file.path)\(current ? " and made current" :                 "; use it with --use-context \(contextName)").

                """
        } catch {
            return "The admin context was not stored (\(error)); use `manifold login` instead.\n"
        }
    }
}
