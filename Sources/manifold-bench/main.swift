import Crypto
import Foundation
import ManifoldCore

// Micro-benchmarks of Manifold's hot paths, each run beside a peer in the same process and reported as a
// ratio (peer time / Manifold time: above 1 means Manifold is faster). Build with `-c release`; see
// deploy/bench/README.md for the whole-command comparisons against other tools.
//
//   swift run -c release manifold-bench [--megabytes N] [--rounds N]

struct Options {
    var megabytes = 64
    var rounds = 5

    init(_ arguments: [String]) throws {
        var iterator = arguments.makeIterator()
        while let argument = iterator.next() {
            switch argument {
            case "--megabytes": megabytes = try Self.number(iterator.next(), for: argument)
            case "--rounds": rounds = try Self.number(iterator.next(), for: argument)
            case "-h", "--help":
                print("usage: manifold-bench [--megabytes N (default 64)] [--rounds N (default 5)]")
                exit(0)
            default: throw BenchError("unknown argument \(argument); see --help")
            }
        }
    }

    static func number(_ text: String?, for name: String) throws -> Int {
        guard let text, let value = Int(text), value > 0 else { throw BenchError("\(name) needs a whole number above 0") }
        return value
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

do {
    let options = try Options(Array(CommandLine.arguments.dropFirst()))
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

    // The two must agree, or the comparison is meaningless.
    let agree =
        Digest.compute(.sha256, of: data).hex == SHA256.hash(data: data).map { String(format: "%02x", $0) }.joined()
    guard agree else { throw BenchError("manifold's SHA-256 disagrees with swift-crypto's") }
    if sink == 42 { print("") }  // keeps the optimiser from dropping the work
} catch {
    FileHandle.standardError.write(Data("manifold-bench: \(error)\n".utf8))
    exit(2)
}
