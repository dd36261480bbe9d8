import ArgumentParser
import Foundation
import ManifoldAPI

/// The options of `manifold init` and `manifold serve`, declared once for both executables: the `manifold` CLI parses
/// and documents them (help, manual pages, completions) and hands the command to `manifold-coordinator`, which parses
/// the same arguments again and runs the coordinator. The CLI thereby links none of the coordinator's libraries
/// (SwiftNIO, Hummingbird, GRDB, PostgresNIO): an executable less than half the size, which starts sooner.
public enum CoordinatorCommands {
    public static let initConfiguration = CommandConfiguration(
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

    public static let serveConfiguration = CommandConfiguration(
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
}

/// `manifold init`'s options.
public struct InitOptions: ParsableArguments {
    @Option(help: ArgumentHelp("Directory for the coordinator's state.", valueName: "dir"))
    public var stateDir: String

    @Option(
        name: .customLong("host"),
        help: ArgumentHelp(
            "Name or IP address agents and users reach the coordinator by (repeatable); localhost, 127.0.0.1 and ::1 are always included.",
            valueName: "name-or-ip"))
    public var hosts: [String] = []

    @Option(help: ArgumentHelp("Address to listen on, written to the config file.", valueName: "host:port"))
    public var listen: String?

    @Option(
        name: .customLong("allow-registry"),
        help: ArgumentHelp(
            "A registry builds may push to and the coordinator may reach: HOST, HOST:PORT or *.DOMAIN (repeatable; written to allowed_registries).",
            valueName: "registry"))
    public var allowedRegistries: [String] = []

    @Option(help: ArgumentHelp("How many agents the printed join token may join (1–10000).", valueName: "n"))
    public var joinTokenUses = InitialJoinToken.uses

    @Option(help: ArgumentHelp("Hours the printed join token works (1–8784).", valueName: "hours"))
    public var joinTokenHours = Int(InitialJoinToken.lifetime / 3600)

    @Option(
        help: ArgumentHelp(
            "The PostgreSQL database replicas share, postgres://USER@HOST:PORT/DB (password from --database-password-file "
                + "or MANIFOLD_DATABASE_PASSWORD); written to the config file. Default: the embedded SQLite database.",
            valueName: "url"))
    public var database: String?

    @Option(help: ArgumentHelp("A file holding the database password (first line).", valueName: "path"))
    public var databasePasswordFile: String?

    @Flag(help: "Write a config that serves plain HTTP (only behind a TLS-terminating proxy).")
    public var insecurePlainHttp = false

    @Option(help: ArgumentHelp("Name of the admin context stored for you.", valueName: "name"))
    public var contextName = "default"

    @Flag(help: "Do not store an admin context for the local user.")
    public var noContext = false

    public init() {}

    public func validate() throws {
        guard (1...10_000).contains(joinTokenUses) else {
            throw ValidationError("--join-token-uses \(joinTokenUses) must be 1…10000")
        }
        guard (1...8_784).contains(joinTokenHours) else {
            throw ValidationError("--join-token-hours \(joinTokenHours) must be 1…8784 (a year)")
        }
    }
}

/// `manifold serve`'s options.
public struct ServeOptions: ParsableArguments {
    @Option(help: ArgumentHelp("The directory `manifold init` created.", valueName: "dir"))
    public var stateDir: String

    @Option(help: ArgumentHelp("Address to listen on.", valueName: "host:port"))
    public var listen: String?

    @Flag(help: "Serve plain HTTP (only behind a TLS-terminating proxy).")
    public var insecurePlainHttp = false

    @Option(help: ArgumentHelp("trace, debug, info, notice, warning, error or critical.", valueName: "level"))
    public var logLevel: String?

    @Option(help: ArgumentHelp("text, or json: one object a line for a log collector.", valueName: "format"))
    public var logFormat: String?

    @Option(
        help: ArgumentHelp(
            "The PostgreSQL database replicas share, postgres://USER@HOST:PORT/DB (password from database_password_file "
                + "or MANIFOLD_DATABASE_PASSWORD, never here); default: database_url, else the embedded SQLite database.",
            valueName: "url"))
    public var database: String?

    public init() {}
}

#if !os(Windows)
/// `manifold init` in the CLI: checks its arguments, then becomes `manifold-coordinator init` with the same ones.
struct ForwardedInitCommand: ParsableCommand {
    static let configuration = CoordinatorCommands.initConfiguration

    @OptionGroup var options: InitOptions

    func run() throws {
        try CoordinatorExecutable.replaceProcess(arguments: CoordinatorExecutable.forwardedArguments())
    }
}

/// `manifold serve` in the CLI: checks its arguments, then becomes `manifold-coordinator serve` with the same ones.
struct ForwardedServeCommand: ParsableCommand {
    static let configuration = CoordinatorCommands.serveConfiguration

    @OptionGroup var options: ServeOptions

    func run() throws {
        try CoordinatorExecutable.replaceProcess(arguments: CoordinatorExecutable.forwardedArguments())
    }
}
#endif
