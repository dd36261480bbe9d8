import ArgumentParser
import ManifoldCLI
import ManifoldHTTP

struct Manifold: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "manifold", abstract: ManifoldCLI.abstract, discussion: ManifoldCLI.discussion, version: ManifoldCLI.version,
        subcommands: ManifoldCLI.clientCommands + ManifoldCLI.coordinatorCommands)
}

// Not exit(): see ProcessExit.
ProcessExit.now(await ManifoldCLI.main(Manifold.self))
