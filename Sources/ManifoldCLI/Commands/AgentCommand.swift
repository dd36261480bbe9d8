import ArgumentParser
import Foundation
import ManifoldAPI
import ManifoldClient
import ManifoldCore

/// `manifold agent`: the build hosts that joined the coordinator.
struct AgentCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "agent",
        abstract: "List build agents, and drain, disable or enable them (admin).",
        discussion: """
            Examples:
              manifold agent list
              manifold agent drain win-2022-01      # finish the current job, take no new ones
              manifold agent disable win-2022-01    # take no jobs; a running one goes back to the queue
              manifold agent enable win-2022-01
              manifold agent remove win-2022-01     # revoke its credential; the host must join again
            """,
        subcommands: [AgentList.self, AgentDrain.self, AgentDisable.self, AgentEnable.self, AgentRemove.self])
}

struct AgentList: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "list",
        abstract: "List agents: platforms with os.version, builders, labels, state, current job, last seen.",
        discussion: "Examples:\n  manifold agent list\n  manifold agent list --output json")

    @Option(help: "Output format: text or json.") var output: OutputFormat = .text
    @Flag(help: "Print what agents reported as received, terminal control sequences included (removed by default).")
    var raw = false
    @OptionGroup var coordinator: CoordinatorOptions

    func run() async throws {
        let agents = try await coordinator.client().agents()
        switch output {
        case .json: print(try APIJSON.string(agents))
        case .text: print(Self.render(agents, now: Date(), raw: raw), terminator: "")
        }
    }

    /// The agents as a table. Names, builders and labels are what each agent reported at join and poll: unless
    /// `raw`, terminal control sequences are removed from them, so a hostile build host cannot rewrite the screen.
    static func render(_ agents: [AgentView], now: Date, raw: Bool = false) -> String {
        guard !agents.isEmpty else { return "No agents have joined; run `manifold-agent join` on a build host.\n" }
        var table = TextTable(["NAME", "POOL", "PLATFORMS", "BUILDERS", "LABELS", "STATE", "JOB", "LAST SEEN"])
        for agent in agents.sorted(by: { $0.name < $1.name }) {
            let cells = [
                agent.name, agent.pool ?? "-", agent.platforms.map(\.description).joined(separator: ","),
                agent.builders.isEmpty ? "-" : agent.builders.joined(separator: ","),
                agent.labels.isEmpty
                    ? "-" : agent.labels.keys.sorted().map { "\($0)=\(agent.labels[$0]!)" }.joined(separator: ","),
                agent.state.rawValue, agent.currentJob ?? "-", agent.lastSeenAt.map { HumanFormat.age($0, now: now) } ?? "never",
            ]
            table.add(raw ? cells : cells.map(TerminalText.clean))
        }
        return table.render()
    }
}

/// Sets one agent's state; shared by drain, disable and enable.
protocol AgentStateCommand: AsyncParsableCommand {
    var name: String { get }
    var coordinator: CoordinatorOptions { get }
    static var target: AgentState { get }
    static var done: String { get }
}

extension AgentStateCommand {
    func run() async throws {
        let agent = try await coordinator.client().setAgentState(name: name, Self.target)
        print("Agent \(agent.name) is \(agent.state.rawValue): \(Self.done)")
    }
}

struct AgentDrain: AgentStateCommand {
    static let configuration = CommandConfiguration(
        commandName: "drain", abstract: "Let an agent finish its current job and take no new ones.",
        discussion: "Example:\n  manifold agent drain win-2022-01")
    static let target = AgentState.draining
    static let done = "it finishes its current job and takes no new ones."
    @Argument(help: ArgumentHelp("The agent's name.", valueName: "name")) var name: String
    @OptionGroup var coordinator: CoordinatorOptions
}

struct AgentDisable: AgentStateCommand {
    static let configuration = CommandConfiguration(
        commandName: "disable", abstract: "Stop giving an agent jobs; a job it holds goes back to the queue.",
        discussion: "Example:\n  manifold agent disable win-2022-01")
    static let target = AgentState.disabled
    static let done = "it takes no jobs until enabled."
    @Argument(help: ArgumentHelp("The agent's name.", valueName: "name")) var name: String
    @OptionGroup var coordinator: CoordinatorOptions
}

struct AgentEnable: AgentStateCommand {
    static let configuration = CommandConfiguration(
        commandName: "enable", abstract: "Let a drained or disabled agent take jobs again.",
        discussion: "Example:\n  manifold agent enable win-2022-01")
    static let target = AgentState.active
    static let done = "it takes jobs again."
    @Argument(help: ArgumentHelp("The agent's name.", valueName: "name")) var name: String
    @OptionGroup var coordinator: CoordinatorOptions
}

struct AgentRemove: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "remove",
        abstract: "Remove an agent: revoke its credential at once; a job it holds goes back to the queue.",
        discussion:
            "The host can build again only after `manifold-agent join` with a join token.\n\nExample:\n  manifold agent remove win-2022-01"
    )
    @Argument(help: ArgumentHelp("The agent's name.", valueName: "name")) var name: String
    @OptionGroup var coordinator: CoordinatorOptions

    func run() async throws {
        let agent = try await coordinator.client().removeAgent(name: name)
        print("Agent \(agent.name) was removed: its credential no longer works.")
    }
}

/// `manifold token`: API tokens (admin).
struct TokenCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "token",
        abstract: "Create, list and revoke API tokens (admin).",
        discussion: """
            Roles: admin (everything), submitter (submit, cancel, retry within its repositories; read them), viewer \
            (read the builds of its repositories, and agents), join (only join agents into its pool).

            A submitter or viewer created without --repository covers every repository of allowed_registries (shown \
            as * in `token list`). A join token joins agents into one pool (--pool, default "default"), expires after \
            24 h and joins one agent unless --expires and --uses say otherwise. Other tokens never expire unless \
            --expires is given.

            Examples:
              manifold token create --role submitter --name ci --repository 'registry.example.com/team/*'
              manifold token create --role join --name windows-hosts --pool windows --expires 1h --uses 3
              manifold token list
              manifold token revoke tok_5d0c…
            """,
        subcommands: [TokenCreate.self, TokenList.self, TokenRevoke.self])
}

extension Role: ExpressibleByArgument {}

struct TokenCreate: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "create", abstract: "Create a token; its secret is shown once.",
        discussion: """
            Examples:
              manifold token create --role submitter --name ci --repository 'registry.example.com/team/*'
              manifold token create --role viewer --repository 'registry.example.com/team/**' -o json
              manifold token create --role join --pool release --expires 1h --uses 1
            """)

    @Option(help: ArgumentHelp("admin, submitter, viewer or join.", valueName: "role")) var role: Role
    @Option(help: ArgumentHelp("A name that says who uses it (default: the role).", valueName: "name")) var name: String?
    @Option(help: ArgumentHelp("The pool a join token's agents join (default: default).", valueName: "pool"))
    var pool: String?
    @Option(
        help: ArgumentHelp(
            "How long the token works: a number with s, m, h or d (join tokens: default 24h; others: never expire).",
            valueName: "duration"))
    var expires: String?
    @Option(help: ArgumentHelp("How many agents a join token may join (default 1).", valueName: "n")) var uses: Int?
    @Option(
        name: .customLong("repository"),
        help: ArgumentHelp(
            "A repository pattern a submitter or viewer is limited to, REGISTRY/PATH with * per component and a final /** (repeatable; default: every allowed registry).",
            valueName: "pattern"))
    var repositories: [String] = []
    @Option(name: [.customShort("o"), .long], help: "Output format: text or json.") var output: OutputFormat = .text
    @OptionGroup var coordinator: CoordinatorOptions

    func validate() throws {
        if let expires { _ = try Self.seconds(expires) }
        for pattern in repositories {
            do { _ = try RepositoryPattern(parsing: pattern) } catch { throw ValidationError("--repository \(error)") }
        }
    }

    /// `90s`, `30m`, `1h`, `7d` (or plain seconds) as seconds.
    static func seconds(_ text: String) throws -> Int {
        let units: [Character: Int] = ["s": 1, "m": 60, "h": 3_600, "d": 86_400]
        let unit = text.last.flatMap { units[$0] }
        let number = unit == nil ? Substring(text) : text.dropLast()
        guard let value = Int(number), value > 0, value <= 3_660 * 86_400 / (unit ?? 1) else {
            throw ValidationError("--expires \"\(text)\" is not a duration; give a number with s, m, h or d, e.g. 1h or 7d")
        }
        return value * (unit ?? 1)
    }

    func run() async throws {
        let created = try await coordinator.client().createToken(
            name: name ?? role.rawValue, role: role, pool: pool, expiresInSeconds: try expires.map(Self.seconds),
            uses: uses, repositories: repositories.isEmpty ? nil : repositories)
        switch output {
        case .json: print(try APIJSON.string(created))
        case .text:
            print("Created \(created.token.role.rawValue) token \(created.token.id) (\(created.token.name)).")
            print(TokenList.limits(created.token))
            print("Secret (shown once; store it safely):")
            print("  \(created.secret)")
        }
    }
}

struct TokenList: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "list", abstract: "List tokens (never their secrets).",
        discussion: "Example:\n  manifold token list --output json")

    @Option(help: "Output format: text or json.") var output: OutputFormat = .text
    @OptionGroup var coordinator: CoordinatorOptions

    func run() async throws {
        let tokens = try await coordinator.client().tokens()
        switch output {
        case .json: print(try APIJSON.string(tokens))
        case .text:
            let now = Date()
            var table = TextTable(["ID", "NAME", "ROLE", "SCOPE", "EXPIRES", "USES LEFT", "CREATED", "LAST USED", "REVOKED"])
            for token in tokens {
                table.add([
                    token.id, token.name, token.role.rawValue, Self.scope(token),
                    token.expiresAt.map { $0 <= now ? "expired" : $0.formatted(.iso8601) } ?? "never",
                    token.role == .join ? token.usesLeft.map(String.init) ?? "unlimited" : "-",
                    HumanFormat.age(token.createdAt, now: now),
                    token.lastUsedAt.map { HumanFormat.age($0, now: now) } ?? "never",
                    token.revokedAt.map { HumanFormat.age($0, now: now) } ?? "-",
                ])
            }
            print(table.render(), terminator: "")
        }
    }

    /// What a token reaches: a join token's pool, a submitter's or viewer's repositories (`*`: all allowed).
    static func scope(_ token: TokenView) -> String {
        switch token.role {
        case .join: return "pool \(token.pool ?? "-")"
        case .admin: return "*"
        case .submitter, .viewer: return token.repositories?.joined(separator: ",") ?? "*"
        }
    }

    /// One line on what the new token may do and until when.
    static func limits(_ token: TokenView) -> String {
        let expiry = token.expiresAt.map { "until \($0.formatted(.iso8601))" } ?? "without expiry"
        switch token.role {
        case .join:
            let uses = token.usesLeft.map { "\($0) agent\($0 == 1 ? "" : "s")" } ?? "any number of agents"
            return "Joins \(uses) into pool \(token.pool ?? "-"), \(expiry)."
        case .admin: return "Admin, \(expiry)."
        case .submitter, .viewer:
            return "Repositories: \(token.repositories?.joined(separator: ", ") ?? "* (every allowed registry)"), \(expiry)."
        }
    }
}

struct TokenRevoke: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "revoke", abstract: "Revoke a token; calls with it are refused from now on.",
        discussion: "Example:\n  manifold token revoke tok_5d0c…")

    @Argument(help: ArgumentHelp("The token's id (from `manifold token list`).", valueName: "id")) var id: String
    @OptionGroup var coordinator: CoordinatorOptions

    func run() async throws {
        try await coordinator.client().revokeToken(id: id)
        print("Revoked token \(id).")
    }
}
