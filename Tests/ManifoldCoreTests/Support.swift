import Foundation

/// Failure of a helper process the tests run (openssl, python3).
struct ToolError: Error, CustomStringConvertible {
    let description: String
}

/// Runs a real tool with `input` on standard input and returns its exit status and standard output.
///
/// Standard input is fed from a temporary file and output is collected into one, so large buffers
/// cannot deadlock on full pipes.
func runTool(_ executable: String, _ arguments: [String], input: Data = Data()) throws -> (status: Int32, output: String) {
    let directory = FileManager.default.temporaryDirectory.appendingPathComponent("manifold-core-tests-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(at: directory) }
    let inputURL = directory.appendingPathComponent("stdin")
    let outputURL = directory.appendingPathComponent("stdout")
    try input.write(to: inputURL)
    _ = FileManager.default.createFile(atPath: outputURL.path, contents: nil)

    let process = Process()
    process.executableURL = URL(fileURLWithPath: executable)
    process.arguments = arguments
    let stdin = try FileHandle(forReadingFrom: inputURL)
    let stdout = try FileHandle(forWritingTo: outputURL)
    defer {
        try? stdin.close()
        try? stdout.close()
    }
    process.standardInput = stdin
    process.standardOutput = stdout
    process.standardError = stdout
    try process.run()
    process.waitUntilExit()
    let output = String(decoding: try Data(contentsOf: outputURL), as: UTF8.self)
    return (process.terminationStatus, output)
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
