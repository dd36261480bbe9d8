import ArgumentParser
import Foundation
import ManifoldAPI
import ManifoldCoordinator

/// `manifold init`: creates a coordinator's state directory.
public struct InitCommand: AsyncParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "init",
        abstract: "Create a coordinator state directory: config, CA and server certificate, database, first tokens.",
        discussion: """
            Prints the CA's SHA-256 fingerprint (agents pin it), an admin token and an agent join token. \
            Tokens are shown once and stored only as hashes. Refuses to touch an existing, non-empty directory.

            Example:
              manifold init --state-dir /var/lib/manifold --host coordinator.example.com --host 192.0.2.10
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

    @Flag(help: "Write a config that serves plain HTTP (only behind a TLS-terminating proxy).")
    var insecurePlainHttp = false

    public init() {}

    public func run() async throws {
        let state = StateDirectory(URL(fileURLWithPath: stateDir).standardizedFileURL)
        var flags: [String: String] = [:]
        if let listen { flags["listen"] = listen }
        if insecurePlainHttp { flags["insecure_plain_http"] = "true" }
        let settings: CoordinatorSettings
        do {
            settings = try CoordinatorSettings.resolve(configFile: nil, environment: [:], flags: flags)
        } catch {
            throw ValidationError("\(error)")
        }
        let existed = FileManager.default.fileExists(atPath: state.root.path)
        try state.create()
        do {
            let result = try await Coordinator.initialise(state: state, settings: settings, hosts: hosts)
            print(
                """
                Initialised \(state.root.path)

                CA fingerprint (agents pin it with --ca-fingerprint):
                  \(result.caFingerprint)

                Admin token (shown once; keep it safe):
                  \(result.adminToken)

                Agent join token (shown once):
                  \(result.joinToken)

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
}
