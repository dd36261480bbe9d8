import Foundation
import FuzzSupport
import ManifoldCore

/// Image references, digests and the registry/repository patterns of scopes: any text parses or fails with the
/// parser's error; what parses prints back to text that parses to the same value. Input with a newline is also
/// read as `PATTERN\nREFERENCE` and the pattern matched against the reference.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzImageReference(_ bytes: UnsafePointer<UInt8>?, _ count: Int) -> CInt {
    let text = String(decoding: fuzzInput(bytes, count), as: UTF8.self)
    checkReference(text)
    if let digest = try? Digest(parsing: text) {
        fuzzExpect((try? Digest(parsing: digest.description)) == digest, "digest \(digest) does not parse back")
    }
    if let pattern = try? RegistryPattern(parsing: text) {
        fuzzExpect(
            (try? RegistryPattern(parsing: pattern.description)) == pattern,
            "registry pattern \(pattern) (from \"\(text)\") does not parse back")
    }
    if let pattern = try? RepositoryPattern(parsing: text) {
        fuzzExpect(
            (try? RepositoryPattern(parsing: pattern.description)) == pattern,
            "repository pattern \(pattern) (from \"\(text)\") does not parse back")
    }
    if let newline = text.firstIndex(of: "\n") {
        let patternText = String(text[..<newline])
        let referenceText = String(text[text.index(after: newline)...])
        if let reference = try? ImageReference(parsing: referenceText) {
            if let pattern = try? RepositoryPattern(parsing: patternText) {
                _ = pattern.matches(reference)
            }
            if let pattern = try? RegistryPattern(parsing: patternText) {
                _ = pattern.matches(registry: reference.registry)
                _ = pattern.matches(registry: reference.apiHost)
            }
        }
    }
    return 0
}

func checkReference(_ text: String) {
    guard let reference = try? ImageReference(parsing: text) else { return }
    fuzzExpect(
        (try? ImageReference(parsing: reference.description)) == reference,
        "\"\(text)\" parses to \(reference), which does not parse back to the same reference")
    fuzzExpect(
        (try? ImageReference(parsing: reference.familiarDescription)) == reference,
        "\"\(text)\" parses to \(reference), whose familiar form \(reference.familiarDescription) does not parse back")
    let rebuilt = try? ImageReference(
        registry: reference.registry, repository: reference.repository, tag: reference.tag, digest: reference.digest)
    fuzzExpect(rebuilt == reference, "the parts of \(reference) (from \"\(text)\") do not make the same reference")
    fuzzExpect(
        reference.name.utf8.count <= ImageReference.maximumNameLength,
        "\"\(text)\" parses to a \(reference.name.utf8.count) character name")
    _ = reference.tagOrDigest
}
