import ArgumentParser
import ManifoldCLI
import ManifoldHTTP

#if canImport(ManifoldServerCommands)
import ManifoldServerCommands
#endif
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#elseif canImport(ucrt)
import ucrt
#endif

struct Manifold: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "manifold", abstract: ManifoldCLI.abstract, discussion: ManifoldCLI.discussion, version: ManifoldCLI.version,
        subcommands: ManifoldCLI.clientCommands + serverCommands)

    /// The coordinator's commands, on hosts that can run one (not Windows).
    static var serverCommands: [any ParsableCommand.Type] {
        #if canImport(ManifoldServerCommands)
        ServerCommands.all
        #else
        []
        #endif
    }
}

// Not exit(): see ProcessExit.
ProcessExit.now(await ManifoldCLI.main(Manifold.self))
