import ArgumentParser
import Foundation
import Logging

/// The `manifold` command line. `main()` parses, runs, and maps outcomes to exit codes:
/// 0 success, 1 failure, 2 usage error.
public enum ManifoldCLI {
    public static func main(_ arguments: [String]? = nil) async -> Int32 {
        do {
            var command = try Manifold.parseAsRoot(arguments)
            if var asyncCommand = command as? AsyncParsableCommand {
                try await asyncCommand.run()
            } else {
                try command.run()
            }
            return 0
        } catch {
            return report(error)
        }
    }

    static func report(_ error: any Error) -> Int32 {
        let code = Manifold.exitCode(for: error)
        if code == .success {
            // --help, --version: ArgumentParser renders them as "errors" with exit 0.
            print(Manifold.fullMessage(for: error))
            return 0
        }
        if code == .validationFailure || error is ValidationError {
            FileHandle.standardError.write(Data((Manifold.fullMessage(for: error) + "\n").utf8))
            return 2
        }
        if let exit = error as? ExitCode { return exit.rawValue }
        FileHandle.standardError.write(Data("error: \(String(describing: error))\n".utf8))
        return 1
    }
}

struct Manifold: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "manifold",
        abstract: "Build multi-platform container images on native hosts and publish their manifest lists.",
        discussion: """
            Examples:
              manifold manifest create registry.local/app --tag 1.0 \\
                  registry.local/app:1.0-linux-amd64 registry.local/app:1.0-windows-amd64
              manifold manifest inspect registry.local/app:1.0
              echo "$PASSWORD" | manifold registry login registry.local --username ci --password-stdin
            """,
        version: "0.1.0",
        subcommands: [ManifestCommand.self, RegistryCommand.self]
    )
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
