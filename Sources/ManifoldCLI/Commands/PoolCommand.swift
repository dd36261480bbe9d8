import ArgumentParser
import Foundation
import ManifoldAPI
import ManifoldClient
import ManifoldCore

/// `manifold pool`: groups of agents with fixed labels and allowed platforms (admin).
struct PoolCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "pool",
        abstract: "Create, list and remove agent pools (admin).",
        discussion: """
            A pool's labels are imposed on every agent that joins it with one of its join tokens, and its agents may \
            offer only its platforms (none listed: any). An agent's labels and platforms are fixed when it joins; \
            its polls may narrow them, never widen them. A label key that a pool imposes can be carried only by \
            that pool's agents, so `--label pool=release` on a build reaches only the release pool.
            The `default` pool (created by `manifold init`) imposes nothing and allows every platform.

            Examples:
              manifold pool create release --label pool=release --platform linux/amd64 --platform linux/arm64
              manifold token create --role join --pool release --expires 1h --uses 1
              manifold pool list
              manifold pool remove release
            """,
        subcommands: [PoolCreate.self, PoolList.self, PoolRemove.self])
}

struct PoolCreate: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "create", abstract: "Create a pool with the labels its agents get and the platforms they may offer.",
        discussion:
            "Example:\n  manifold pool create windows --label os=windows --platform windows/amd64:10.0.20348")

    @Argument(help: ArgumentHelp("The pool's name (lower-case letters, digits, - and _).", valueName: "name"))
    var name: String
    @Option(
        name: .customLong("label"),
        help: ArgumentHelp("A label every agent of the pool carries (repeatable).", valueName: "key=value"))
    var labels: [String] = []
    @Option(
        name: .customLong("platform"),
        help: ArgumentHelp(
            "A platform the pool's agents may offer (repeatable; none: any).", valueName: "os/arch[/variant][:os.version]"))
    var platforms: [String] = []
    @Option(name: [.customShort("o"), .long], help: "Output format: text or json.") var output: OutputFormat = .text
    @OptionGroup var coordinator: CoordinatorOptions

    func labelMap() throws -> [String: String] {
        var map: [String: String] = [:]
        for label in labels {
            guard let equals = label.firstIndex(of: "="), equals != label.startIndex else {
                throw ValidationError("--label \"\(label)\" must be key=value, e.g. pool=release")
            }
            let key = String(label[..<equals])
            guard map[key] == nil else { throw ValidationError("--label \(key) is given twice; give each key once") }
            map[key] = String(label[label.index(after: equals)...])
        }
        return map
    }

    func validate() throws {
        _ = try labelMap()
        for platform in platforms {
            do { _ = try Platform(parsing: platform) } catch { throw ValidationError("--platform \(error)") }
        }
    }

    func run() async throws {
        let pool = try await coordinator.client().createPool(
            CreatePoolRequest(name: name, labels: try labelMap(), platforms: platforms))
        switch output {
        case .json: print(try APIJSON.string(pool))
        case .text:
            print("Created pool \(pool.name): labels \(PoolList.labels(pool)), platforms \(PoolList.platforms(pool)).")
            print("Join agents into it with a token from: manifold token create --role join --pool \(pool.name)")
        }
    }
}

struct PoolList: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "list", abstract: "List pools with their labels, platforms, agents and working join tokens.",
        discussion: "Example:\n  manifold pool list --output json")

    @Option(help: "Output format: text or json.") var output: OutputFormat = .text
    @OptionGroup var coordinator: CoordinatorOptions

    func run() async throws {
        let pools = try await coordinator.client().pools()
        switch output {
        case .json: print(try APIJSON.string(pools))
        case .text:
            var table = TextTable(["NAME", "LABELS", "PLATFORMS", "AGENTS", "JOIN TOKENS"])
            for pool in pools {
                table.add([pool.name, Self.labels(pool), Self.platforms(pool), "\(pool.agents)", "\(pool.liveJoinTokens)"])
            }
            print(table.render(), terminator: "")
        }
    }

    static func labels(_ pool: PoolView) -> String {
        pool.labels.isEmpty ? "-" : pool.labels.keys.sorted().map { "\($0)=\(pool.labels[$0]!)" }.joined(separator: ",")
    }

    static func platforms(_ pool: PoolView) -> String {
        pool.platforms.isEmpty ? "any" : pool.platforms.map(\.description).joined(separator: ",")
    }
}

struct PoolRemove: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "remove",
        abstract: "Remove a pool; refused while agents or working join tokens use it.",
        discussion: "Example:\n  manifold pool remove release")

    @Argument(help: ArgumentHelp("The pool's name.", valueName: "name")) var name: String
    @OptionGroup var coordinator: CoordinatorOptions

    func run() async throws {
        try await coordinator.client().removePool(name: name)
        print("Removed pool \(name).")
    }
}
