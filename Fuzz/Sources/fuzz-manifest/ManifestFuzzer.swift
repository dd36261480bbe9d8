import Foundation
import FuzzSupport
import ManifoldCore

let mediaTypes: [String?] = [nil, "application/json"] + MediaType.allManifestTypes + ["text/plain; charset=utf-8"]

/// Manifests, indexes and image configs as a registry returns them: any bytes decode or fail with a
/// `ManifestError`; a decoded document encodes canonically to bytes that decode to the same document.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzManifest(_ bytes: UnsafePointer<UInt8>?, _ count: Int) -> CInt {
    let data = fuzzInput(bytes, count)
    for mediaType in [nil, mediaTypes[count % mediaTypes.count]] {
        guard let manifest = try? RawManifest(bytes: data, mediaType: mediaType),
            let content = try? manifest.decoded()
        else { continue }
        fuzzExpect(manifest.digest == Digest.compute(of: data), "the digest of the manifest is not the digest of its bytes")
        let encoded: Data
        let kind: String
        do {
            switch content {
            case .image(let image):
                encoded = try CanonicalJSON.encode(image)
                kind = manifest.mediaType
            case .index(let index):
                encoded = try CanonicalJSON.encode(index)
                for entry in index.manifests { _ = entry.platform?.normalized().key }
                kind = manifest.mediaType
            }
        } catch {
            fuzzExpect(false, "a decoded \(manifest.mediaType) does not encode: \(error)")
            continue
        }
        do {
            let again = try RawManifest(bytes: encoded, mediaType: kind).decoded()
            fuzzExpect(again == content, "the \(kind) changed in an encode-decode round trip")
        } catch {
            fuzzExpect(false, "a re-encoded \(kind) does not decode: \(error)")
        }
    }
    if let config = try? JSONDecoder().decode(ImageConfig.self, from: data) {
        _ = config.platform.normalized().key
    }
    return 0
}
