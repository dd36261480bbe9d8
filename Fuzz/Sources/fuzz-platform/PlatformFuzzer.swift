import Foundation
import FuzzSupport
import ManifoldCore

/// Platforms: any text parses or fails with a `PlatformError`; a parsed platform is normalised, prints back to
/// text that parses to itself, and satisfies itself. Input with a newline is also read as `WANTED\nHOST`.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzPlatform(_ bytes: UnsafePointer<UInt8>?, _ count: Int) -> CInt {
    let text = String(decoding: fuzzInput(bytes, count), as: UTF8.self)
    if let platform = try? Platform(parsing: text) {
        fuzzExpect(platform.normalized() == platform, "\"\(text)\" parses to \(platform), which is not normalised")
        fuzzExpect(
            (try? Platform(parsing: platform.description)) == platform,
            "\"\(text)\" parses to \(platform), which does not parse back to itself")
        fuzzExpect(platform.isSatisfied(by: platform), "\(platform) does not satisfy itself")
        fuzzExpect(
            platform.key == Platform(os: platform.os, architecture: platform.architecture, variant: platform.variant).description,
            "the key of \(platform) is not its os/arch/variant")
    }
    _ = Platform.windowsBuild(text)
    if let newline = text.firstIndex(of: "\n"),
        let wanted = try? Platform(parsing: String(text[..<newline])),
        let host = try? Platform(parsing: String(text[text.index(after: newline)...]))
    {
        if wanted.isSatisfied(by: host) {
            fuzzExpect(wanted.key == host.key, "\(wanted) is satisfied by \(host), a different os/arch/variant")
        }
    }
    // The JSON form (image index entries, image configs) decodes and normalises without trapping.
    if let decoded = try? JSONDecoder().decode(Platform.self, from: Data(text.utf8)) {
        _ = decoded.normalized().key
        _ = decoded.description
    }
    return 0
}
