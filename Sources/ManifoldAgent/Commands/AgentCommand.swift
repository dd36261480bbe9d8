import ArgumentParser
import Foundation
import Logging
import ManifoldHTTP
import ManifoldLogging

/// `manifold-agent`: the build agent's command line.
public struct AgentCommand: AsyncParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "manifold-agent",
        abstract: "Builds container images for a Manifold coordinator on this host.",
        discussion: """
            Join once with a join token, then run (usually as a systemd unit or a Windows service):

              manifold-agent join https://ci.example.com:8443 --token mjt_… \\
                  --ca-fingerprint sha256:3b1f… --state-dir /var/lib/manifold-agent
              manifold-agent run --state-dir /var/lib/manifold-agent --builder buildah
              manifold-agent doctor --state-dir /var/lib/manifold-agent
            """,
        version: AgentVersion.current,
        subcommands: [JoinCommand.self, RunCommand.self, DoctorCommand.self])

    public init() {}

    /// Entry point of the `manifold-agent` executable.
    public static func runMain() async {
        let environment = ProcessInfo.processInfo.environment
        let level = environment["MANIFOLD_AGENT_LOG_LEVEL"].flatMap { Logger.Level(rawValue: $0) } ?? .info
        let format: LogFormat
        do {
            format =
                try environment["MANIFOLD_AGENT_LOG_FORMAT"].map {
                    try LogFormat(parsing: $0, source: "MANIFOLD_AGENT_LOG_FORMAT")
                } ?? .text
        } catch {
            FileHandle.standardError.write(Data("manifold-agent: \(error)\n".utf8))
            ProcessExit.now(64)
        }
        let file = environment["MANIFOLD_AGENT_LOG_FILE"].flatMap { $0.isEmpty ? nil : $0 }
        if file == nil, format == .text {
            LoggingSystem.bootstrap { label in
                var handler = StreamLogHandler.standardError(label: label)
                handler.logLevel = level
                return handler
            }
        } else {
            let sink = file.map(LogSink.file(path:)) ?? .standardError
            LoggingSystem.bootstrap { label in
                var handler = LineLogHandler(label: label, format: format, sink: sink)
                handler.logLevel = level
                return handler
            }
        }
        ProcessExit.now(await run(arguments: nil))
    }

    /// Parses and runs one command; returns the exit status, with ArgumentParser's messages printed as its
    /// `main()` prints them (help and version on standard output, errors on standard error).
    static func run(arguments: [String]?) async -> Int32 {
        do {
            var command = try parseAsRoot(arguments)
            if var asyncCommand = command as? AsyncParsableCommand {
                try await asyncCommand.run()
            } else {
                try command.run()
            }
            return 0
        } catch {
            let code = exitCode(for: error)
            let message = fullMessage(for: error)
            if code == .success {
                print(message)
            } else if !message.isEmpty {
                FileHandle.standardError.write(Data((message + "\n").utf8))
            }
            return code.rawValue
        }
    }
}

/// Options every subcommand shares.
struct StateOptions: ParsableArguments {
    @Option(
        name: .customLong("state-dir"),
        help: ArgumentHelp(
            "The agent's state directory (credential, CA, pending reports).", discussion: "Env: MANIFOLD_AGENT_STATE_DIR.",
            valueName: "dir"))
    var stateDirectory: String?

    @Option(
        name: .customLong("config"),
        help: ArgumentHelp(
            "A key = value config file; defaults to STATE_DIR/agent.conf when that exists. Env: MANIFOLD_AGENT_CONFIG.",
            valueName: "file"))
    var configFile: String?

    func resolvedStateDirectory() throws -> String {
        if let stateDirectory { return stateDirectory }
        if let value = ProcessInfo.processInfo.environment["MANIFOLD_AGENT_STATE_DIR"], !value.isEmpty { return value }
        throw ValidationError("--state-dir is required (or MANIFOLD_AGENT_STATE_DIR)")
    }
}
