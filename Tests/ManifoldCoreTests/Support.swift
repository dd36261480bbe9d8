import Foundation
import ManifoldTestSupport

/// Failure of a helper process the tests run (openssl, python3).
struct ToolError: Error, CustomStringConvertible {
    let description: String
}

/// Runs a real tool with `input` on standard input and returns its exit status and its standard output and error.
func runTool(_ executable: String, _ arguments: [String], input: Data = Data()) throws -> (status: Int32, output: String) {
    let result = try runCommand(executable, arguments, input: input)
    return (result.status, result.stdout + result.stderr)
}

/// The hex digest `/usr/bin/openssl dgst` computes for `data`.
func opensslHex(_ algorithm: String, of data: Data) throws -> String {
    let (status, output) = try runTool("/usr/bin/openssl", ["dgst", "-\(algorithm)", "-r"], input: data)
    guard status == 0, let hex = output.split(separator: " ").first else {
        throw ToolError(description: "openssl dgst -\(algorithm) failed (\(status)): \(output)")
    }
    return String(hex)
}

/// `count` random bytes.
func randomBytes(_ count: Int) -> Data {
    var generator = SystemRandomNumberGenerator()
    var bytes = [UInt8](repeating: 0, count: count)
    for index in bytes.indices { bytes[index] = generator.next() }
    return Data(bytes)
}

/// A syntactically valid SHA-256 digest string made of one repeated hex character.
func fakeDigest(_ character: Character = "a") -> String {
    "sha256:" + String(repeating: character, count: 64)
}
