import ArgumentParser
import Foundation
import Logging

/// `manifold-agent run`: take jobs until shut down.
struct RunCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run",
        abstract: "Polls the coordinator for jobs and builds them.",
        discussion: """
            Settings come from flags, then MANIFOLD_AGENT_* environment variables, then the config file \
            (key = value; see agent/agent.conf.example), then defaults.

            The first SIGTERM/SIGINT stops polling, lets the running job finish and report, and exits; a second one \
            (or --drain-timeout) cancels the job, reports it cancelled and exits.

            Examples:
              manifold-agent run --state-dir /var/lib/manifold-agent --builder buildah \\
                  --global-arg=--storage-driver --global-arg=vfs --builder-arg=--isolation --builder-arg=chroot
              manifold-agent run --state-dir /var/lib/manifold-agent --builder command --command /usr/local/bin/build.sh
              manifold-agent run --state-dir C:\\ProgramData\\manifold-agent --builder docker \\
                  --platform windows/amd64:10.0.20348
            """)

    @OptionGroup var state: StateOptions

    @Option(name: .customLong("platform"), help: "A platform this host offers (e.g. linux/arm64); repeatable.")
    var platforms: [String] = []

    @Option(help: "docker, buildx, buildah, podman or command (default buildah).")
    var builder: String?

    @Option(
        name: .customLong("builder-arg"), parsing: .unconditionalSingleValue,
        help: "An argument after the build subcommand, or the command builder's argument; repeatable.")
    var builderArguments: [String] = []

    @Option(
        name: .customLong("global-arg"), parsing: .unconditionalSingleValue,
        help: "buildah/podman: an argument before every subcommand (e.g. --storage-driver); repeatable.")
    var globalArguments: [String] = []

    @Option(
        name: .customLong("push-arg"), parsing: .unconditionalSingleValue,
        help: "buildah/podman: an argument after push (e.g. --cert-dir=DIR); repeatable.")
    var pushArguments: [String] = []

    @Option(help: "The executable the command builder runs.")
    var command: String?

    @Option(name: .customLong("label"), help: ArgumentHelp("A label key=value; repeatable.", valueName: "key=value"))
    var labels: [String] = []

    @Option(name: .customLong("drain-timeout"), help: "Seconds the first shutdown signal waits for the running job.")
    var drainTimeout: Int?

    @Option(name: .customLong("kill-grace"), help: "Seconds between terminate and kill when a build is stopped.")
    var killGrace: Int?

    @Option(name: .customLong("work-dir"), help: "Where per-job work directories go (default STATE_DIR/work).")
    var workDirectory: String?

    @Option(name: .customLong("redact"), help: "A literal string redacted from build logs; repeatable.")
    var redactions: [String] = []

    @Option(
        name: .customLong("allow-ssh-git-host"),
        help: ArgumentHelp(
            "Clone git contexts over ssh from this host (HOST, HOST:PORT, *.DOMAIN) with this host's keys; repeatable.",
            valueName: "host"))
    var allowedSSHGitHosts: [String] = []

    @Flag(help: "Allow git contexts over plain http:// (default: https only).")
    var allowHttpGit = false

    @Flag(help: "Windows: run under the Service Control Manager (the service installer passes it).")
    var service = false

    func run() async throws {
        let settings = try resolveSettings(state: state, environment: ProcessInfo.processInfo.environment) {
            settings throws(AgentSettingsError) in
            if !platforms.isEmpty { settings.platforms = platforms }
            if let builder { try settings.apply(key: "builder", value: builder, origin: "--builder") }
            if !builderArguments.isEmpty { settings.builderArguments = builderArguments }
            if !globalArguments.isEmpty { settings.globalArguments = globalArguments }
            if !pushArguments.isEmpty { settings.pushArguments = pushArguments }
            if let command { settings.command = command }
            if !labels.isEmpty {
                settings.labels = [:]
                for label in labels { try settings.apply(key: "label", value: label, origin: "--label") }
            }
            if let drainTimeout { settings.drainTimeoutSeconds = drainTimeout }
            if let killGrace { settings.killGraceSeconds = killGrace }
            if let workDirectory { settings.workDirectory = workDirectory }
            if !redactions.isEmpty { settings.redactions = redactions }
            if !allowedSSHGitHosts.isEmpty {
                settings.allowedSSHGitHosts = []
                for host in allowedSSHGitHosts {
                    try settings.apply(key: "allow_ssh_git_host", value: host, origin: "--allow-ssh-git-host")
                }
            }
            if allowHttpGit { settings.allowHTTPGit = true }
        }
        let logger = Logger(label: "manifold.agent")
        let runner = AgentRunner(settings: settings, logger: logger)
        SignalWatcher.install(runner.shutdown) { name, stage in
            switch stage {
            case .draining: logger.notice("\(name): finishing the current job, then exiting (again to cancel it)")
            case .cancelling: logger.notice("\(name) again: cancelling the current job")
            case .running: break
            }
        }
        do {
            if service {
                try await ServiceHost.run(shutdown: runner.shutdown) { try await runner.run() }
            } else {
                try await runner.run()
            }
        } catch let error as AgentError {
            logger.critical("\(error.description)")
            throw ExitCode(1)
        }
    }
}

/// Settings with the precedence flags > environment > config file > defaults.
func resolveSettings(
    state: StateOptions, environment: [String: String],
    flags: (inout AgentSettings) throws(AgentSettingsError) -> Void
) throws -> AgentSettings {
    do {
        var settings = AgentSettings(stateDirectory: "")
        let explicitState = state.stateDirectory ?? environment["MANIFOLD_AGENT_STATE_DIR"]
        let configFile =
            state.configFile ?? environment["MANIFOLD_AGENT_CONFIG"]
            ?? explicitState.map { URL(fileURLWithPath: $0).appendingPathComponent("agent.conf").path }
        if let configFile {
            if state.configFile != nil || environment["MANIFOLD_AGENT_CONFIG"] != nil
                || FileManager.default.fileExists(atPath: configFile)
            {
                try settings.load(file: configFile)
            }
        }
        try settings.load(environment: environment)
        try flags(&settings)
        if let stateDirectory = state.stateDirectory { settings.stateDirectory = stateDirectory }
        guard !settings.stateDirectory.isEmpty else {
            throw AgentSettingsError("--state-dir is required (or MANIFOLD_AGENT_STATE_DIR, or state_dir in the config file)")
        }
        return settings
    } catch let error as AgentSettingsError {
        throw ValidationError(error.description)
    }
}
