import ArgumentParser
import Foundation
import Logging
import ManifoldCoordinator
import ManifoldLogging

/// `manifold serve`: runs the coordinator.
public struct ServeCommand: AsyncParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "serve",
        abstract: "Run the coordinator: the HTTPS API, scheduling, digest verification and list publishing.",
        discussion: """
            Settings come from flags, then MANIFOLD_* environment variables, then STATE_DIR/manifold.yaml, then defaults. \
            SIGTERM stops accepting requests, lets in-flight ones finish and exits.

            Examples:
              manifold serve --state-dir /var/lib/manifold
              manifold serve --state-dir ./state --listen 127.0.0.1:7443
              manifold serve --state-dir /var/lib/manifold --database postgres://manifold@db.example/manifold
            """)

    @Option(help: ArgumentHelp("The directory `manifold init` created.", valueName: "dir"))
    var stateDir: String

    @Option(help: ArgumentHelp("Address to listen on.", valueName: "host:port"))
    var listen: String?

    @Flag(help: "Serve plain HTTP (only behind a TLS-terminating proxy).")
    var insecurePlainHttp = false

    @Option(help: ArgumentHelp("trace, debug, info, notice, warning, error or critical.", valueName: "level"))
    var logLevel: String?

    @Option(help: ArgumentHelp("text, or json: one object a line for a log collector.", valueName: "format"))
    var logFormat: String?

    @Option(
        help: ArgumentHelp(
            "The PostgreSQL database replicas share, postgres://USER@HOST:PORT/DB (password from database_password_file "
                + "or MANIFOLD_DATABASE_PASSWORD, never here); default: database_url, else the embedded SQLite database.",
            valueName: "url"))
    var database: String?

    public init() {}

    public func run() async throws {
        let state = StateDirectory(URL(fileURLWithPath: stateDir).standardizedFileURL)
        var flags: [String: String] = [:]
        if let listen { flags["listen"] = listen }
        if insecurePlainHttp { flags["insecure_plain_http"] = "true" }
        if let logLevel { flags["log_level"] = logLevel }
        if let logFormat { flags["log_format"] = logFormat }
        if let database { flags["database_url"] = database }
        let settings: CoordinatorSettings
        do {
            settings = try CoordinatorSettings.resolve(
                configFile: state.configFile, environment: ProcessInfo.processInfo.environment, flags: flags)
        } catch {
            throw ValidationError("\(error)")
        }
        switch settings.logFormat {
        case .text: LoggingSystem.bootstrap { StreamLogHandler.standardError(label: $0) }
        case .json:
            let sink = LogSink.standardError
            LoggingSystem.bootstrap { LineLogHandler(label: $0, format: .json, sink: sink) }
        }
        var logger = Logger(label: "manifold.coordinator")
        logger.logLevel = settings.loggerLevel
        try await Coordinator(state: state, settings: settings, logger: logger).run { port in
            // A line scripts and tests can wait for.
            FileHandle.standardOutput.write(Data("listening on port \(port)\n".utf8))
        }
    }
}

/// The commands the `manifold` executable adds on hosts that can run a coordinator.
public enum ServerCommands {
    public static let all: [any ParsableCommand.Type] = [InitCommand.self, ServeCommand.self]
}
