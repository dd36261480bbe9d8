import ArgumentParser
import Foundation
import ManifoldAPI
import ManifoldCLI
import ManifoldCoordinator

/// `manifold init`: creates a coordinator's state directory (in `manifold-coordinator`, which the `manifold` CLI hands
/// the command to).
public struct InitCommand: AsyncParsableCommand {
    public static let configuration = CoordinatorCommands.initConfiguration

    @OptionGroup var options: InitOptions

    public init() {}

    public func run() async throws {
        let state = StateDirectory(URL(fileURLWithPath: options.stateDir).standardizedFileURL)
        var flags: [String: String] = [:]
        if let listen = options.listen { flags["listen"] = listen }
        if options.insecurePlainHttp { flags["insecure_plain_http"] = "true" }
        if !options.allowedRegistries.isEmpty {
            flags["allowed_registries"] = options.allowedRegistries.joined(separator: ",")
        }
        if let database = options.database { flags["database_url"] = database }
        if let databasePasswordFile = options.databasePasswordFile { flags["database_password_file"] = databasePasswordFile }
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
                state: state, settings: settings, hosts: options.hosts, joinTokenUses: options.joinTokenUses,
                joinTokenLifetime: TimeInterval(options.joinTokenHours) * 3600)
            let contextNote = options.noContext ? "" : storeContext(result, state: state, settings: settings)
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
                  manifold-agent join https://\(options.hosts.first ?? "HOST"):\(settings.listenAddress.port) --token JOIN_TOKEN --ca-fingerprint \(result.caFingerprint) --state-dir /var/lib/manifold-agent
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
        let contextName = options.contextName
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
