import Foundation
import FuzzSupport

// The build-file parser is internal to the CLI; debug builds (the only ones this package makes) are testable.
@testable import ManifoldCLI

/// `manifold.yaml`, which arrives with the code it builds: any text parses or fails with a `BuildFileError` that
/// names a line of the file.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzBuildFile(_ bytes: UnsafePointer<UInt8>?, _ count: Int) -> CInt {
    let text = String(decoding: fuzzInput(bytes, count), as: UTF8.self)
    let lineCount = text.utf8.count { $0 == UInt8(ascii: "\n") } + 1
    do {
        _ = try BuildFile.parse(text, file: "manifold.yaml")
    } catch {
        fuzzExpect(
            (1...max(1, lineCount)).contains(error.line),
            "the error \"\(error)\" names line \(error.line) of a \(lineCount) line file")
    }
    return 0
}
