import ArgumentParser
import ManifoldCLI
import ManifoldHTTP
import ManifoldServerCommands

/// The coordinator's executable. `manifold init` and `manifold serve` become it (the CLI replaces its process with this
/// one, same arguments), so its root command is named `manifold` too and its messages read as the command typed.
/// Started directly, `manifold-coordinator serve …` works the same.
struct ManifoldCoordinatorCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "manifold",
        abstract: "The Manifold coordinator: `manifold init` creates its state directory, `manifold serve` runs it.",
        version: ManifoldCLI.version,
        subcommands: ServerCommands.all)
}

// Not exit(): see ProcessExit.
ProcessExit.now(await ManifoldCLI.main(ManifoldCoordinatorCommand.self))
