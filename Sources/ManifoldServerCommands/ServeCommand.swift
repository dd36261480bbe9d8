import ArgumentParser
import Foundation
import Logging
import ManifoldCLI
import ManifoldCoordinator
import ManifoldLogging

/// `manifold serve`: runs the coordinator (in `manifold-coordinator`, which the `manifold` CLI hands the command to).
public struct ServeCommand: AsyncParsableCommand {
    public static let configuration = CoordinatorCommands.serveConfiguration

    @OptionGroup var options: ServeOptions

    public init() {}

    public func run() async throws {
        let state = StateDirectory(URL(fileURLWithPath: options.stateDir).standardizedFileURL)
        var flags: [String: String] = [:]
        if let listen = options.listen { flags["listen"] = listen }
        if options.insecurePlainHttp { flags["insecure_plain_http"] = "true" }
        if let logLevel = options.logLevel { flags["log_level"] = logLevel }
        if let logFormat = options.logFormat { flags["log_format"] = logFormat }
        if let database = options.database { flags["database_url"] = database }
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

/// The commands of `manifold-coordinator`.
public enum ServerCommands {
    public static let all: [any ParsableCommand.Type] = [InitCommand.self, ServeCommand.self]
}
