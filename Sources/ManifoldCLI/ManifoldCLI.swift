import ArgumentParser
import Foundation
import Logging

/// The `manifold` command line. The executable defines the root command (with the coordinator's `init` and `serve`
/// where they can run) and calls `main`, which parses, runs, and maps outcomes to exit codes: 0 success, 1 failure,
/// 2 usage error.
public enum ManifoldCLI {
    /// Commands every build of `manifold` has; they build on Windows too.
    public static let clientCommands: [any ParsableCommand.Type] = [
        LoginCommand.self, ContextCommand.self, BuildCommand.self, AgentCommand.self, TokenCommand.self, PoolCommand.self,
        ManifestCommand.self, RegistryCommand.self, DashboardCommand.self,
    ]

    /// `init` and `serve`, handed over to `manifold-coordinator` once their arguments are checked; none on Windows,
    /// where no coordinator runs.
    public static var coordinatorCommands: [any ParsableCommand.Type] {
        #if os(Windows)
        []
        #else
        [ForwardedInitCommand.self, ForwardedServeCommand.self]
        #endif
    }

    public static let version = "0.1.0"
    public static let abstract = "Build multi-platform container images on native hosts and publish their manifest lists."
    public static let discussion = """
        Examples:
          manifold login https://ci.example.com:8443 --token mfd_submitter_… --ca-fingerprint sha256:3b1f…
          manifold build submit registry.local/app --tag 1.0 --platform linux/amd64 \\
              --platform windows/amd64:10.0.20348 --context . --watch
          manifold build list
          manifold agent list
          manifold manifest create registry.local/app --tag 1.0 \\
              registry.local/app:1.0-linux-amd64 registry.local/app:1.0-windows-amd64
          manifold manifest inspect registry.local/app:1.0
          echo "$PASSWORD" | manifold registry login registry.local --username ci --password-stdin
          manifold init --state-dir /var/lib/manifold --host coordinator.example.com
          manifold serve --state-dir /var/lib/manifold
        """

    public static func main<Root: ParsableCommand>(_ root: Root.Type, _ arguments: [String]? = nil) async -> Int32 {
        do {
            var command = try root.parseAsRoot(arguments)
            if var asyncCommand = command as? AsyncParsableCommand {
                try await asyncCommand.run()
            } else {
                try command.run()
            }
            return 0
        } catch {
            return report(error, root: root)
        }
    }

    static func report<Root: ParsableCommand>(_ error: any Error, root: Root.Type) -> Int32 {
        let code = root.exitCode(for: error)
        if code == .success {
            // --help, --version: ArgumentParser renders them as "errors" with exit 0.
            print(root.fullMessage(for: error))
            return 0
        }
        if code == .validationFailure || error is ValidationError {
            FileHandle.standardError.write(Data((root.fullMessage(for: error) + "\n").utf8))
            return 2
        }
        if let exit = error as? ExitCode { return exit.rawValue }
        if error is SubmitError || error is BuildFileError {
            // Bad input caught before anything was sent: a usage error.
            FileHandle.standardError.write(Data("error: \(String(describing: error))\n".utf8))
            return 2
        }
        FileHandle.standardError.write(Data("error: \(String(describing: error))\n".utf8))
        return 1
    }
}

/// `-v` / `--verbose`, shared by every command.
struct GlobalOptions: ParsableArguments {
    @Flag(name: .shortAndLong, help: "Log each registry request and retry to stderr.")
    var verbose = false

    func makeLogger(_ label: String) -> Logger {
        var logger = Logger(label: label) { StreamLogHandler.standardError(label: $0) }
        logger.logLevel = verbose ? .debug : .warning
        return logger
    }
}
