import Foundation
import FuzzSupport
import ManifoldArchive

/// Tar reader: any bytes yield entries or an `ArchiveError`, never a trap; a file's content is exactly its size.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzTar(_ bytes: UnsafePointer<UInt8>?, _ count: Int) -> CInt {
    let reader = TarReader(from: MemorySource(fuzzInput(bytes, count)))
    var index = 0
    do {
        while let entry = try reader.next() {
            fuzzExpect(entry.size >= 0, "entry \(entry.path) has a negative size \(entry.size)")
            switch entry.kind {
            case .file, .other: break
            default: fuzzExpect(entry.size == 0, "non-file entry \(entry.path) reports \(entry.size) content bytes")
            }
            // Every other entry is read to its end; the rest are left for next() to skip.
            if index % 2 == 0 {
                var read: Int64 = 0
                while case let chunk = try reader.readContent(upToCount: 1000), !chunk.isEmpty {
                    read += Int64(chunk.count)
                    fuzzExpect(read <= entry.size, "read \(read) bytes of \(entry.path), which has \(entry.size)")
                }
                fuzzExpect(read == entry.size, "read \(read) bytes of \(entry.path), which has \(entry.size)")
            }
            index += 1
        }
        fuzzExpect(try reader.next() == nil, "an entry after the end of the archive")
    } catch is ArchiveError {
        // Refusing bad input with a typed error is the expected outcome.
    } catch {
        fuzzExpect(false, "an error that is not an ArchiveError: \(error)")
    }
    return 0
}
