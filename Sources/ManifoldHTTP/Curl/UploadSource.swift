import Foundation

/// A request body read by libcurl's read callback, on the loop thread only.
final class UploadSource {
    private enum Storage {
        case bytes(Data)
        case file(FileHandle, start: Int64)
    }

    private let storage: Storage
    let length: Int64
    private var position: Int64 = 0

    init(_ body: HTTPRequest.Body, url: String) throws(HTTPClientError) {
        switch body {
        case .none:
            storage = .bytes(Data())
            length = 0
        case .bytes(let data):
            storage = .bytes(data)
            length = Int64(data.count)
        case .file(let path, let offset, let requested):
            guard let handle = FileHandle(forReadingAtPath: path) else {
                throw .invalidRequest("cannot open \(path) to upload to \(url)")
            }
            do {
                let size = Int64(try handle.seekToEnd())
                let length = requested ?? (size - offset)
                guard offset >= 0, length >= 0, offset + length <= size else {
                    try? handle.close()
                    throw HTTPClientError.invalidRequest(
                        "the region \(offset)+\(length) is outside \(path) (\(size) bytes), uploading to \(url)")
                }
                try handle.seek(toOffset: UInt64(offset))
                storage = .file(handle, start: offset)
                self.length = length
            } catch let error as HTTPClientError {
                throw error
            } catch {
                try? handle.close()
                throw .invalidRequest("cannot read \(path) to upload to \(url): \(error)")
            }
        }
    }

    /// Copies the next bytes into `buffer`; 0 at the end, -1 on a read error.
    func read(into buffer: UnsafeMutableRawBufferPointer) -> Int {
        let wanted = Int(min(Int64(buffer.count), length - position))
        guard wanted > 0 else { return 0 }
        switch storage {
        case .bytes(let data):
            let start = data.startIndex + Int(position)
            data.copyBytes(to: buffer, from: start..<(start + wanted))
            position += Int64(wanted)
            return wanted
        case .file(let handle, _):
            guard let chunk = try? handle.read(upToCount: wanted), !chunk.isEmpty else { return -1 }
            chunk.copyBytes(to: buffer)
            position += Int64(chunk.count)
            return chunk.count
        }
    }

    /// Rewinds (libcurl asks when it resends a body on a fresh connection).
    func seek(to offset: Int64) -> Bool {
        guard offset >= 0, offset <= length else { return false }
        if case .file(let handle, let start) = storage {
            guard (try? handle.seek(toOffset: UInt64(start + offset))) != nil else { return false }
        }
        position = offset
        return true
    }

    func close() {
        if case .file(let handle, _) = storage { try? handle.close() }
    }
}
