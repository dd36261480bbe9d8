import Foundation
import ManifoldTestSupport
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// `manifold init` and `manifold serve` run in `manifold-coordinator`: the CLI links none of the coordinator's
/// libraries, checks the two commands' arguments itself and then replaces its process with the coordinator's
/// executable, same arguments.
@Suite struct CoordinatorExecutableTests {
    static func coordinatorBinary() throws -> String {
        URL(fileURLWithPath: try manifoldBinary()).deletingLastPathComponent().appendingPathComponent("manifold-coordinator")
            .path
    }

    @Test func serveBecomesTheCoordinatorsExecutableInTheSameProcessWithSignalsDeliverable() async throws {
        let scratch = try ScratchDirectory(prefix: "serve-handover")
        defer { scratch.remove() }
        let port = try Loopback.freePort()
        let state = scratch.file("state").path
        let initialised = try await manifold(["init", "--state-dir", state, "--listen", "127.0.0.1:\(port)", "--no-context"])
        #expect(initialised.status == 0, "\(initialised.stderr)")
        let running = try CoordinatorProcess.serve(state: state, port: port, logDirectory: scratch.url, name: "coordinator")
        defer { running.client.shutdown() }
        let pid = running.process.processIdentifier
        // The process started as `manifold serve` is now the coordinator's executable, with the arguments as typed.
        let executable = try FileManager.default.destinationOfSymbolicLink(atPath: "/proc/\(pid)/exe")
        let expected = URL(fileURLWithPath: try Self.coordinatorBinary()).resolvingSymlinksInPath().path
        #expect(executable == expected, "process \(pid) runs \(executable)")
        let commandLine = try Data(contentsOf: URL(fileURLWithPath: "/proc/\(pid)/cmdline")).split(separator: 0)
            .map { String(decoding: $0, as: UTF8.self) }
        #expect(Array(commandLine.dropFirst()) == ["serve", "--state-dir", state], "\(commandLine)")
        // A program keeps the signal mask of the thread that replaced the process: nothing may arrive blocked.
        let status = try String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8)
        let blocked = status.split(separator: "\n").first { $0.hasPrefix("SigBlk:") }
        #expect(blocked?.split(separator: "\t").last.map(String.init) == "0000000000000000", "\(blocked ?? "no SigBlk")")
        kill(pid, SIGTERM)
        for _ in 0..<600 where running.process.isRunning { try await Task.sleep(for: .milliseconds(50)) }
        #expect(!running.process.isRunning && running.process.terminationStatus == 0, "\(running.process.output())")
    }

    @Test func theCLICarriesNoneOfTheCoordinatorsLibraries() async throws {
        // Module names in the executables' symbols and metadata: each is in the coordinator's executable (so the
        // search finds what it looks for) and in no byte of the CLI's.
        for module in ["HummingbirdCore", "PostgresNIO", "GRDB", "NIOPosix", "ManifoldCoordinator", "ManifoldStore"] {
            let inCoordinator = try await runCommand("grep", ["-c", "-a", "-F", module, try Self.coordinatorBinary()])
            #expect(inCoordinator.status == 0, "\(module) not found in manifold-coordinator: the search finds nothing")
            let inCLI = try await runCommand("grep", ["-c", "-a", "-F", module, try manifoldBinary()])
            #expect(inCLI.status == 1, "manifold links \(module): \(inCLI.stdout) lines")
        }
    }

    @Test func withoutTheCoordinatorsExecutableInitAndServeSayWhereTheyLookedAndCreateNothing() async throws {
        let scratch = try ScratchDirectory(prefix: "no-coordinator")
        defer { scratch.remove() }
        // A host with the CLI only: `manifold` alone in a directory. The build directory on PATH changes nothing: the
        // coordinator's executable is taken from beside the CLI only.
        let bin = scratch.file("bin")
        try FileManager.default.createDirectory(at: bin, withIntermediateDirectories: true)
        let cli = bin.appendingPathComponent("manifold").path
        try FileManager.default.copyItem(atPath: try manifoldBinary(), toPath: cli)
        let built = URL(fileURLWithPath: try manifoldBinary()).deletingLastPathComponent().path
        let environment = ["PATH": "\(built):/usr/bin:/bin", "XDG_CONFIG_HOME": scratch.file("config").path]
        let state = scratch.file("state").path
        for command in ["init", "serve"] {
            let result = try await runCommand(cli, [command, "--state-dir", state], environment: environment)
            #expect(result.status == 1, "\(command): \(result.status) \(result.stderr)")
            #expect(
                result.stderr.contains("`manifold \(command)` runs in the coordinator's executable, manifold-coordinator")
                    && result.stderr.contains("which is not in \(bin.path). The coordinator's package installs both"),
                "\(result.stderr)")
        }
        #expect(!FileManager.default.fileExists(atPath: state))
        // Usage errors are still the CLI's own: found before any hand-over, exit 2, naming the option.
        let missing = try await runCommand(cli, ["serve"], environment: environment)
        #expect(missing.status == 2 && missing.stderr.contains("--state-dir"), "\(missing.status) \(missing.stderr)")
        let outOfRange = try await runCommand(
            cli, ["init", "--state-dir", state, "--join-token-uses", "0"], environment: environment)
        #expect(
            outOfRange.status == 2 && outOfRange.stderr.contains("--join-token-uses 0 must be 1…10000"), "\(outOfRange.stderr)")
        // Help comes from the CLI too, with the options both executables share.
        let help = try await runCommand(cli, ["serve", "--help"], environment: environment)
        #expect(help.status == 0 && help.stdout.contains("--database <url>"), "\(help.stdout)")
    }
}
