import Crypto
import Foundation
import ManifoldArchive
import ManifoldCore

// Micro-benchmarks of Manifold's hot paths, each run beside a peer in the same process and reported as a
// ratio (peer time / Manifold time: above 1 means Manifold is faster). Build with `-c release`; see
// deploy/bench/README.md for the whole-command comparisons against other tools.
//
//   swift run -c release manifold-bench [--megabytes N] [--rounds N] [--builds N] [--lanes N] [--postgres URL] [--store-only]
//   manifold-bench --dispatch URL[,URL…] --ca FILE [--agents N] [--builds N]   (token in MANIFOLD_BENCH_TOKEN)
//   manifold-bench --throughput URL[,URL…] --ca FILE --registry HOST:PORT [--registry-ca FILE] [--agents N]
//                  [--idle N] [--builds N] [--window N]
//       (token in MANIFOLD_BENCH_TOKEN, the registry's in MANIFOLD_BENCH_REGISTRY_USER and _PASSWORD)

struct Options {
    var megabytes = 64
    var rounds = 5
    var builds = 200
    /// Pairs of agents driving builds through the store at once.
    var lanes = 8
    /// A PostgreSQL database to compare the store on (password in MANIFOLD_DATABASE_PASSWORD); the benchmark
    /// makes schemas of its own there and drops them.
    var postgres: String?
    /// Only the store benchmark.
    var storeOnly = false
    /// Dispatch latency against running coordinators (comma-separated URLs) instead of the in-process benchmarks;
    /// the token (admin) comes from MANIFOLD_BENCH_TOKEN, the CA from `--ca`.
    var dispatch: [URL] = []
    var caFile: String?
    /// Simulated agents: 100 by default for dispatch, 20 for throughput.
    var agents: Int?
    /// Builds published per second against running coordinators, with instant agents pushing to `registry`.
    var throughput: [URL] = []
    /// Agents holding polls for a platform no build asks for, beside the throughput mode's working agents.
    var idle = 0
    /// Throughput builds in flight at once.
    var window = 50
    var registry: String?
    var registryCA: String?

    init(_ arguments: [String]) throws {
        var iterator = arguments.makeIterator()
        while let argument = iterator.next() {
            switch argument {
            case "--megabytes": megabytes = try Self.number(iterator.next(), for: argument)
            case "--rounds": rounds = try Self.number(iterator.next(), for: argument)
            case "--builds": builds = try Self.number(iterator.next(), for: argument)
            case "--lanes": lanes = try Self.number(iterator.next(), for: argument)
            case "--store-only": storeOnly = true
            case "--dispatch": dispatch = try Self.coordinators(iterator.next(), for: argument)
            case "--throughput": throughput = try Self.coordinators(iterator.next(), for: argument)
            case "--idle": idle = try Self.number(iterator.next(), for: argument, allowZero: true)
            case "--window": window = try Self.number(iterator.next(), for: argument)
            case "--registry":
                guard let host = iterator.next(), !host.isEmpty, !host.contains("/") else {
                    throw BenchError("--registry needs the registry as HOST:PORT, e.g. 127.0.0.1:5000")
                }
                registry = host
            case "--registry-ca":
                guard let path = iterator.next() else { throw BenchError("--registry-ca needs the registry's CA file") }
                registryCA = path
            case "--ca":
                guard let path = iterator.next() else { throw BenchError("--ca needs the coordinator's CA certificate file") }
                caFile = path
            case "--agents": agents = try Self.number(iterator.next(), for: argument)
            case "--postgres":
                guard let url = iterator.next() else { throw BenchError("--postgres needs a postgres:// URL") }
                postgres = url
            case "-h", "--help":
                print(
                    "usage: manifold-bench [--megabytes N (default 64)] [--rounds N (default 5)] [--builds N (default 200)] "
                        + "[--lanes N (default 8)] [--postgres URL] [--store-only] "
                        + "[--dispatch URL[,URL…] --ca FILE [--agents N (default 100)] [--builds N]] "
                        + "[--throughput URL[,URL…] --ca FILE --registry HOST:PORT [--registry-ca FILE] "
                        + "[--agents N (default 20)] [--idle N (default 0)] [--builds N] [--window N (default 50)]]")
                exit(0)
            default: throw BenchError("unknown argument \(argument); see --help")
            }
        }
    }

    static func number(_ text: String?, for name: String, allowZero: Bool = false) throws -> Int {
        guard let text, let value = Int(text), value > 0 || (allowZero && value == 0) else {
            throw BenchError("\(name) needs a whole number \(allowZero ? "of 0 or more" : "above 0"), not \(text ?? "nothing")")
        }
        return value
    }

    /// Comma-separated `https://` coordinator URLs.
    static func coordinators(_ text: String?, for name: String) throws -> [URL] {
        let urls = (text ?? "").split(separator: ",").compactMap { URL(string: String($0)) }
        guard !urls.isEmpty, urls.allSatisfy({ $0.scheme == "https" }) else {
            throw BenchError("\(name) needs https:// coordinator URLs, separated by commas, not \(text ?? "nothing")")
        }
        return urls
    }
}

struct BenchError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// The fastest of `rounds` runs of `body`, in seconds (the minimum is the least disturbed by other work).
func fastest(rounds: Int, _ body: () -> Void) -> Double {
    var best = Double.infinity
    for _ in 0..<rounds {
        let start = ContinuousClock.now
        body()
        let elapsed = ContinuousClock.now - start
        best = min(best, Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18)
    }
    return best
}

func report(_ name: String, bytes: Int, manifold: Double, peerName: String, peer: Double) {
    let megabytes = Double(bytes) / 1_048_576
    let label = name.padding(toLength: 8, withPad: " ", startingAt: 0)
    print(
        label
            + String(
                format: "manifold %8.1f MB/s   %@ %8.1f MB/s   ratio %@/manifold time = %.2f", megabytes / manifold,
                peerName as NSString, megabytes / peer, peerName as NSString, peer / manifold))
}

/// Packs and unpacks a source tree like a build context (many small text files), Manifold's tar+gzip against
/// GNU tar + gzip run on the same tree.
func contextBenchmark(rounds: Int) throws {
    let work = FileManager.default.temporaryDirectory.appendingPathComponent("manifold-bench-\(UUID().uuidString.prefix(8))")
    defer { try? FileManager.default.removeItem(at: work) }
    let tree = work.appendingPathComponent("tree")
    var files: [String] = []
    for directory in 0..<40 {
        let folder = "src/module\(directory)"
        try FileManager.default.createDirectory(at: tree.appendingPathComponent(folder), withIntermediateDirectories: true)
        for file in 0..<50 {
            let path = "\(folder)/file\(file).swift"
            let line = "let value\(file) = \"module \(directory) file \(file)\" // a line of source code\n"
            try Data(String(repeating: line, count: 200).utf8).write(to: tree.appendingPathComponent(path))
            files.append(path)
        }
    }
    let bytes = try files.reduce(0) { $0 + (try Data(contentsOf: tree.appendingPathComponent($1)).count) }
    let ours = work.appendingPathComponent("ours.tar.gz")
    let theirs = work.appendingPathComponent("theirs.tar.gz")
    var failure: (any Error)? = nil
    let pack = fastest(rounds: rounds) {
        do {
            let writer = try TarWriter(to: ours, compression: .gzip)
            for path in files.sorted() { try writer.append(file: tree.appendingPathComponent(path), at: path) }
            try writer.finish()
        } catch { failure = error }
    }
    let tarPack = fastest(rounds: rounds) {
        do { try run("/bin/tar", ["-C", tree.path, "-czf", theirs.path, "src"]) } catch { failure = error }
    }
    report("pack", bytes: bytes, manifold: pack, peerName: "GNU tar", peer: tarPack)
    var round = 0
    let unpack = fastest(rounds: rounds) {
        do {
            round += 1
            let target = work.appendingPathComponent("ours-\(round)")
            try FileManager.default.createDirectory(at: target, withIntermediateDirectories: true)
            try ContextUnpacker().unpack(archive: ours, into: target)
        } catch { failure = error }
    }
    let tarUnpack = fastest(rounds: rounds) {
        do {
            round += 1
            let target = work.appendingPathComponent("theirs-\(round)")
            try FileManager.default.createDirectory(at: target, withIntermediateDirectories: true)
            try run("/bin/tar", ["-C", target.path, "-xzf", theirs.path])
        } catch { failure = error }
    }
    report("unpack", bytes: bytes, manifold: unpack, peerName: "GNU tar", peer: tarUnpack)
    if let failure { throw failure }
}

/// Runs a peer tool to completion with `posix_spawn` (not Foundation's `Process`, whose Linux `run()` can crash a
/// process holding many descriptors, as the dispatch benchmark's does: swift-corelibs-foundation#5472).
func run(_ executable: String, _ arguments: [String]) throws {
    let argv: [UnsafeMutablePointer<CChar>?] = ([executable] + arguments).map { strdup($0) } + [nil]
    defer { for pointer in argv { free(pointer) } }
    var pid: pid_t = 0
    let spawned = posix_spawn(&pid, executable, nil, nil, argv, environ)
    guard spawned == 0 else { throw BenchError("could not start \(executable): \(String(cString: strerror(spawned)))") }
    var status: Int32 = 0
    while waitpid(pid, &status, 0) == -1 && errno == EINTR {}
    guard status == 0 else { throw BenchError("\(executable) \(arguments) exited with wait status \(status)") }
}

do {
    let options = try Options(Array(CommandLine.arguments.dropFirst()))
    let environment = ProcessInfo.processInfo.environment
    if !options.dispatch.isEmpty || !options.throughput.isEmpty {
        let mode = options.dispatch.isEmpty ? "--throughput" : "--dispatch"
        guard let caFile = options.caFile else { throw BenchError("\(mode) needs --ca FILE") }
        guard let token = environment["MANIFOLD_BENCH_TOKEN"], !token.isEmpty else {
            throw BenchError("\(mode) needs an admin token in MANIFOLD_BENCH_TOKEN")
        }
        if !options.dispatch.isEmpty {
            try await DispatchBenchmark(
                urls: options.dispatch, caFile: caFile, token: token, agents: options.agents ?? 100,
                dispatches: options.builds
            ).run()
            exit(0)
        }
        guard let registry = options.registry else { throw BenchError("--throughput needs --registry HOST:PORT") }
        guard let user = environment["MANIFOLD_BENCH_REGISTRY_USER"],
            let password = environment["MANIFOLD_BENCH_REGISTRY_PASSWORD"],
            !user.isEmpty
        else {
            throw BenchError(
                "--throughput needs the registry's credentials in MANIFOLD_BENCH_REGISTRY_USER and MANIFOLD_BENCH_REGISTRY_PASSWORD"
            )
        }
        try await ThroughputBenchmark(
            urls: options.throughput, caFile: caFile, token: token, agents: options.agents ?? 20, idle: options.idle,
            builds: options.builds, window: options.window, registry: registry, registryCA: options.registryCA,
            registryCredential: .basic(username: user, password: password)
        ).run()
        exit(0)
    }
    if options.storeOnly {
        try await storeBenchmark(builds: options.builds, lanes: options.lanes, postgres: options.postgres)
        exit(0)
    }
    var generator = SystemRandomNumberGenerator()
    let data = Data((0..<(options.megabytes << 20)).map { _ in UInt8.random(in: 0...255, using: &generator) })
    print("manifold-bench: \(options.megabytes) MiB buffer, fastest of \(options.rounds) rounds")

    var sink = 0
    let ours256 = fastest(rounds: options.rounds) { sink &+= Digest.compute(.sha256, of: data).hex.count }
    let peer256 = fastest(rounds: options.rounds) { sink &+= Array(SHA256.hash(data: data)).count }
    report("sha256", bytes: data.count, manifold: ours256, peerName: "swift-crypto", peer: peer256)

    let ours512 = fastest(rounds: options.rounds) { sink &+= Digest.compute(.sha512, of: data).hex.count }
    let peer512 = fastest(rounds: options.rounds) { sink &+= Array(SHA512.hash(data: data)).count }
    report("sha512", bytes: data.count, manifold: ours512, peerName: "swift-crypto", peer: peer512)

    try contextBenchmark(rounds: options.rounds)
    try await storeBenchmark(builds: options.builds, lanes: options.lanes, postgres: options.postgres)

    // The two must agree, or the comparison is meaningless.
    let agree =
        Digest.compute(.sha256, of: data).hex == SHA256.hash(data: data).map { String(format: "%02x", $0) }.joined()
    guard agree else { throw BenchError("manifold's SHA-256 disagrees with swift-crypto's") }
    if sink == 42 { print("") }  // keeps the optimiser from dropping the work
} catch {
    FileHandle.standardError.write(Data("manifold-bench: \(error)\n".utf8))
    exit(2)
}
