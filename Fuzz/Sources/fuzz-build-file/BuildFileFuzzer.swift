import Foundation
import FuzzSupport

// The build-file parser is internal to the CLI; this package builds it with -enable-testing.
@testable import ManifoldCLI

/// `manifold.yaml`, which arrives with the code it builds: any text parses or fails with a `BuildFileError` that
/// names a line of the file; and the nesting count that decides whether Yams (which recurses once per level) may parse
/// a document is never below the nesting Yams finds.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzBuildFile(_ bytes: UnsafePointer<UInt8>?, _ count: Int) -> CInt {
    let text = String(decoding: fuzzInput(bytes, count), as: UTF8.self)
    // libyaml ends lines at `\r\n`, `\r`, `\n`, NEL, LS and PS, all of which are newline Characters.
    let lineCount = text.count { $0.isNewline } + 1
    do {
        _ = try BuildFile.parse(text, file: "manifold.yaml")
    } catch {
        fuzzExpect(
            (1...lineCount).contains(error.line) && (error.column ?? 1) >= 1,
            "the error \"\(error)\" names line \(error.line) of a \(lineCount) line file")
    }
    var unmarked = text
    if unmarked.unicodeScalars.first == "\u{FEFF}" { unmarked.unicodeScalars.removeFirst() }
    if let root = try? YAMLDocument.parse(text) {
        let bound = YAMLNesting.bound(YAMLText(unmarked)).levels
        fuzzExpect(depth(root) <= bound, "the document nests \(depth(root)) deep, over the bound of \(bound)")
    }
    return 0
}

func depth(_ node: YAMLNode) -> Int {
    switch node.value {
    case .null, .scalar: return 0
    case .sequence(let items): return 1 + (items.map(depth).max() ?? 0)
    case .mapping(let entries): return 1 + (entries.map { depth($0.value) }.max() ?? 0)
    }
}
