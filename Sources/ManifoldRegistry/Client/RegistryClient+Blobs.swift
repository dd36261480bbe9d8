import Foundation
import ManifoldCore
import ManifoldHTTP

extension RegistryClient {
    /// The outcome of a cross-repository mount request.
    public enum MountResult: Sendable, Equatable {
        /// The registry linked the blob (201).
        case mounted
        /// The registry could not mount and opened an upload session instead (202).
        case uploadStarted(URL)
    }

    /// The blob's size when the repository has it, nil when it does not.
    public func blobSize(repository: String, digest: Digest) async throws -> Int64? {
        let operation = "checking blob \(digest) in \(registry)/\(repository)"
        var request = RegistryRequest(method: "HEAD", path: Self.path(repository, "blobs/\(digest)"))
        request.scopes = [.pull(repository)]
        let response = try await send(request, operation: operation)
        switch response.status {
        case 200: return response.headers["Content-Length"].flatMap { Int64($0) } ?? 0
        case 404: return nil
        default: throw unexpected(response, operation: operation)
        }
    }

    /// Reads a small blob (an image config) into memory and verifies its digest.
    public func fetchBlob(repository: String, digest: Digest) async throws -> Data {
        let operation = "fetching blob \(digest) from \(registry)/\(repository)"
        var request = RegistryRequest(method: "GET", path: Self.path(repository, "blobs/\(digest)"))
        request.scopes = [.pull(repository)]
        let response = try await send(request, operation: operation)
        switch response.status {
        case 200: break
        case 404:
            throw RegistryError.notFound(
                kind: "blob", reference: "\(registry)/\(repository)@\(digest)", errors: RegistryError.details(from: response.body)
            )
        default: throw unexpected(response, operation: operation)
        }
        if Int64(response.body.count) > configuration.maxDocumentSize {
            throw RegistryError.tooLarge(
                what: "blob \(digest)", size: Int64(response.body.count), limit: configuration.maxDocumentSize)
        }
        guard digest.matches(response.body) else {
            throw RegistryError.digestMismatch(
                what: "blob \(repository)@\(digest)", expected: digest,
                actual: Digest.compute(digest.algorithm, of: response.body))
        }
        return response.body
    }

    /// Streams a blob to `file` without holding it in memory, then verifies its digest.
    /// Returns the number of bytes written. With `maxSize` (the descriptor's size), a longer answer is cut off
    /// there instead of filling the disk.
    @discardableResult
    public func downloadBlob(repository: String, digest: Digest, to file: URL, maxSize: Int64? = nil) async throws -> Int64 {
        let operation = "downloading blob \(digest) from \(registry)/\(repository)"
        var request = RegistryRequest(method: "GET", path: Self.path(repository, "blobs/\(digest)"))
        request.scopes = [.pull(repository)]
        request.timeout = HTTPRequest.unlimited
        let response = try await send(request, operation: operation) { http, request in
            try await http.download(request, to: file, maxBodySize: maxSize)
        }
        switch response.status {
        case 200: break
        case 404:
            throw RegistryError.notFound(
                kind: "blob", reference: "\(registry)/\(repository)@\(digest)", errors: RegistryError.details(from: response.body)
            )
        default: throw unexpected(response, operation: operation)
        }
        let (actual, size) = try Self.digest(ofFile: file, algorithm: digest.algorithm)
        guard actual == digest else {
            throw RegistryError.digestMismatch(what: "blob \(repository)@\(digest)", expected: digest, actual: actual)
        }
        return size
    }

    /// Asks the registry to link a blob from another repository of the same registry.
    public func mountBlob(repository: String, digest: Digest, from sourceRepository: String) async throws -> MountResult {
        let operation = "mounting blob \(digest) from \(sourceRepository) into \(registry)/\(repository)"
        var request = RegistryRequest(method: "POST", path: Self.path(repository, "blobs/uploads/"))
        request.query = [
            URLQueryItem(name: "mount", value: digest.description), URLQueryItem(name: "from", value: sourceRepository),
        ]
        request.scopes = [.push(repository), .pull(sourceRepository)]
        request.idempotent = true
        let response = try await send(request, operation: operation)
        switch response.status {
        case 201:
            return .mounted
        case 202:
            return .uploadStarted(try location(response, operation: operation))
        default:
            throw unexpected(response, operation: operation)
        }
    }

    /// Uploads a blob held in memory in one PUT (POST to open the session, PUT with `digest=`).
    /// `session` continues an upload the registry already opened (a mount answered with 202).
    public func uploadBlob(repository: String, digest: Digest, data: Data, session: URL? = nil) async throws {
        try await withUploadSession(repository: repository, session: session) { location in
            try await finishUpload(
                repository: repository, digest: digest, location: location, body: .bytes(data), length: Int64(data.count))
        }
    }

    /// Uploads a blob from a file: in one PUT when it fits in `uploadChunkSize`, else in PATCH chunks.
    public func uploadBlob(repository: String, digest: Digest, file: URL, size: Int64, session: URL? = nil) async throws {
        try await withUploadSession(repository: repository, session: session) { location in
            if size <= configuration.uploadChunkSize {
                try await finishUpload(
                    repository: repository, digest: digest, location: location,
                    body: .file(path: file.path, offset: 0, length: size), length: size)
            } else {
                try await uploadChunks(repository: repository, digest: digest, file: file, size: size, location: location)
            }
        }
    }

    /// Runs an upload in a session; a transient failure part-way restarts it in a fresh session
    /// (upload sessions cannot be resumed reliably), up to the retry policy's attempts.
    private func withUploadSession(
        repository: String, session: URL?, _ upload: (URL) async throws -> Void
    ) async throws {
        var attempt = 1
        var reusable = session
        while true {
            let location: URL
            if let existing = reusable {
                location = existing
                reusable = nil
            } else {
                location = try await startUpload(repository: repository)
            }
            let failure: RegistryError
            let retryAfter: String?
            do {
                try await upload(location)
                return
            } catch let error as UploadStepFailure {
                (failure, retryAfter) = (error.error, error.retryAfter)
            } catch let error as RegistryError {
                (failure, retryAfter) = (error, nil)
            }
            guard attempt < configuration.retry.maxAttempts, failure.isTransient else { throw failure }
            let delay = configuration.retry.delay(afterAttempt: attempt, retryAfter: retryAfter)
            logger.info(
                "restarting blob upload",
                metadata: ["repository": "\(repository)", "error": "\(failure)", "delay": "\(delay)"])
            try await configuration.retry.sleep(delay)
            attempt += 1
        }
    }

    func startUpload(repository: String) async throws -> URL {
        let operation = "starting a blob upload to \(registry)/\(repository)"
        var request = RegistryRequest(method: "POST", path: Self.path(repository, "blobs/uploads/"))
        request.scopes = [.push(repository)]
        request.headers.add("Content-Length", "0")
        let response = try await send(request, operation: operation)
        guard response.status == 202 else { throw unexpected(response, operation: operation) }
        return try location(response, operation: operation)
    }

    private func uploadChunks(repository: String, digest: Digest, file: URL, size: Int64, location start: URL) async throws {
        let operation = "uploading blob \(digest) to \(registry)/\(repository)"
        var location = start
        var offset: Int64 = 0
        while offset < size {
            let length = min(configuration.uploadChunkSize, size - offset)
            var request = RegistryRequest(method: "PATCH", url: location)
            request.headers.add("Content-Type", "application/octet-stream")
            request.headers.add("Content-Range", "\(offset)-\(offset + length - 1)")
            request.headers.add("Content-Length", "\(length)")
            request.body = .file(path: file.path, offset: offset, length: length)
            request.scopes = [.push(repository)]
            request.idempotent = false
            request.timeout = HTTPRequest.unlimited
            let response = try await send(request, operation: operation)
            guard response.status == 202 else { throw UploadStepFailure(unexpected(response, operation: operation), response) }
            location = try self.location(response, operation: operation)
            offset += length
        }
        try await finishUpload(repository: repository, digest: digest, location: location, body: .none, length: 0)
    }

    private func finishUpload(
        repository: String, digest: Digest, location: URL, body: HTTPRequest.Body, length: Int64
    ) async throws {
        let operation = "uploading blob \(digest) to \(registry)/\(repository)"
        var request = RegistryRequest(method: "PUT", url: location)
        request.query = [URLQueryItem(name: "digest", value: digest.description)]
        request.headers.add("Content-Type", "application/octet-stream")
        request.headers.add("Content-Length", "\(length)")
        request.body = body
        request.scopes = [.push(repository)]
        // A repeated PUT to a consumed session fails with 404, so a retry restarts at a higher level.
        request.idempotent = false
        if case .file = body { request.timeout = HTTPRequest.unlimited }
        let response = try await send(request, operation: operation)
        guard response.status == 201 || response.status == 204 || response.status == 200 else {
            throw UploadStepFailure(unexpected(response, operation: operation), response)
        }
    }

    private func location(_ response: HTTPResponse, operation: String) throws -> URL {
        guard let header = response.headers["Location"], let url = URL(string: header, relativeTo: response.url) else {
            throw RegistryError.protocolViolation(
                url: response.url.absoluteString, message: "\(operation): the answer has no Location header")
        }
        return url.absoluteURL
    }

    /// Digest and size of a file, read in 1 MiB pieces.
    static func digest(ofFile file: URL, algorithm: Digest.Algorithm) throws -> (Digest, Int64) {
        let handle = try FileHandle(forReadingFrom: file)
        defer { try? handle.close() }
        var hasher = DigestHasher(algorithm)
        var size: Int64 = 0
        while let chunk = try handle.read(upToCount: 1 << 20), !chunk.isEmpty {
            hasher.update(chunk)
            size += Int64(chunk.count)
        }
        return (hasher.finalize(), size)
    }
}

/// A failed step of an upload session, with the registry's `Retry-After` for the restart.
struct UploadStepFailure: Error {
    var error: RegistryError
    var retryAfter: String?

    init(_ error: RegistryError, _ response: HTTPResponse) {
        self.error = error
        self.retryAfter = response.headers["Retry-After"]
    }
}

extension RegistryError {
    /// Failures a fresh attempt might not hit again.
    var isTransient: Bool {
        switch self {
        case .transport(let error, _): return error.isRetryable
        case .unexpectedStatus(_, _, let status, _, _): return RetryPolicy.isRetryable(status: status) || status == 404
        default: return false
        }
    }
}
