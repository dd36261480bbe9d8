import Hummingbird
import ManifoldCore
import Synchronization

/// Hashes and counts an upload as it streams to disk, refusing it once it passes the size limit.
final class UploadTally: Sendable {
    private let state: Mutex<(hasher: DigestHasher, size: Int64)>

    init(_ algorithm: ManifoldCore.Digest.Algorithm) {
        state = Mutex((DigestHasher(algorithm), 0))
    }

    func add(_ buffer: ByteBuffer, limit: Int64) throws {
        try state.withLock { state in
            state.size += Int64(buffer.readableBytes)
            guard state.size <= limit else {
                throw APIError(.contentTooLarge, code: "TOO_LARGE", "the context is over the \(limit)-byte limit")
            }
            buffer.withUnsafeReadableBytes { state.hasher.update($0) }
        }
    }

    func finish() -> (ManifoldCore.Digest, Int64) {
        state.withLock { state in (state.hasher.finalize(), state.size) }
    }
}
