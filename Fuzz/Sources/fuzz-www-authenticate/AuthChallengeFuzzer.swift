import Foundation
import FuzzSupport
import ManifoldRegistry

/// `WWW-Authenticate` headers as registries (or anything posing as one) send them: any bytes parse to zero or
/// more challenges without trapping, each with a non-empty lowercased scheme and lowercased parameter names.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzAuthChallenge(_ bytes: UnsafePointer<UInt8>?, _ count: Int) -> CInt {
    let text = String(decoding: fuzzInput(bytes, count), as: UTF8.self)
    let headers = text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
    for challenge in AuthChallenge.parse(headers) {
        fuzzExpect(!challenge.scheme.isEmpty, "a challenge without a scheme from \"\(text)\"")
        fuzzExpect(challenge.scheme == challenge.scheme.lowercased(), "the scheme \(challenge.scheme) is not lowercased")
        for name in challenge.parameters.keys {
            fuzzExpect(name == name.lowercased(), "the parameter name \(name) is not lowercased")
        }
        _ = challenge.realm
        _ = challenge.service
        _ = challenge.scopes
    }
    return 0
}
