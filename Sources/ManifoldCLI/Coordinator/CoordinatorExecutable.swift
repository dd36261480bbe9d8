#if !os(Windows)
import Foundation

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// The executable that runs the coordinator's commands, installed beside `manifold`: `manifold init` and
/// `manifold serve` replace the CLI's process with it (same process ID, so a service manager's signals reach it).
enum CoordinatorExecutable {
    static let name = "manifold-coordinator"

    /// What `manifold` was started with, less its own name: `init …` or `serve …` exactly as typed.
    static func forwardedArguments() -> [String] { Array(CommandLine.arguments.dropFirst()) }

    /// Where it is looked for, in order: beside the running executable's real file, then beside the path it was
    /// started by (a symbolic link in a `bin` directory). Not on `PATH`: a coordinator of another version found there
    /// would run with this CLI's arguments.
    static func candidates(runningExecutable: String?, invokedAs: String, currentDirectory: String) -> [String] {
        var directories: [String] = []
        if let runningExecutable { directories.append((runningExecutable as NSString).deletingLastPathComponent) }
        if invokedAs.contains("/") {
            let absolute = invokedAs.hasPrefix("/") ? invokedAs : currentDirectory + "/" + invokedAs
            directories.append(((absolute as NSString).standardizingPath as NSString).deletingLastPathComponent)
        }
        var seen = Set<String>()
        return directories.map { ($0 as NSString).appendingPathComponent(name) }.filter { seen.insert($0).inserted }
    }

    /// The real path of the running executable.
    static func runningExecutable() -> String? {
        #if os(Linux)
        return try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")
        #else
        return Bundle.main.executableURL?.resolvingSymlinksInPath().path
        #endif
    }

    static func locate() throws -> String {
        let invokedAs = CommandLine.arguments.first ?? "manifold"
        let running = runningExecutable()
        let candidates = candidates(
            runningExecutable: running, invokedAs: invokedAs, currentDirectory: FileManager.default.currentDirectoryPath)
        if let found = candidates.first(where: { FileManager.default.isExecutableFile(atPath: $0) }) { return found }
        let places = candidates.map { ($0 as NSString).deletingLastPathComponent }
        throw CLIError(
            """
            `manifold \(forwardedArguments().first ?? "serve")` runs in the coordinator's executable, \(name), which is \
            not in \(places.isEmpty ? "manifold's directory" : places.joined(separator: " or ")). The \
            coordinator's package installs both (coordinator/package.sh manifold); put \(name) of the same version \
            next to manifold to run a coordinator here. Submitting builds needs only manifold.
            """)
    }

    /// Replaces this process with the coordinator's executable running `arguments`. Returns only by throwing.
    static func replaceProcess(arguments: [String]) throws {
        let executable = try locate()
        // The new program keeps the calling thread's signal mask (a thread of the concurrency pool, here), and the
        // coordinator must receive SIGTERM and SIGINT whatever this process blocked before.
        var none = sigset_t()
        sigemptyset(&none)
        pthread_sigmask(SIG_SETMASK, &none, nil)
        fflush(nil)
        var argv: [UnsafeMutablePointer<CChar>?] = ([executable] + arguments).map { strdup($0) }
        argv.append(nil)
        execv(executable, argv)
        let reason = String(cString: strerror(errno))
        for pointer in argv { free(pointer) }
        throw CLIError("could not start \(executable) for `manifold \(arguments.first ?? "")`: \(reason)")
    }
}
#endif
