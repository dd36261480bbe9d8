import Foundation
import Hummingbird
import ManifoldAPI
import ManifoldCore
import ManifoldStore

extension CoordinatorAPI {
    func addContextRoutes(to router: Router<CoordinatorContext>) {
        let contexts = router.group("/api/v1/contexts")

        /// 200 when the context is there and the caller may read it (``Store/mayReadContext(digest:grant:)``); 404 otherwise, also
        /// when another token's context with these bytes exists: the caller then uploads the bytes itself.
        contexts.head("/:digest") { _, context -> Response in
            let user = try context.requireUser([.submitter], to: "upload contexts")
            let digest = try Self.digestParameter(context)
            guard try await store.mayReadContext(digest: digest, grant: user) else { return Response(status: .notFound) }
            let recorded = try await markUsed(digest)
            let present = recorded && (options.sharedContexts || FileManager.default.fileExists(atPath: contextFile(digest).path))
            return Response(status: present ? .ok : .notFound)
        }

        /// Streams the upload to a hidden file while hashing it; only a body whose digest matches the URL is kept.
        /// The context is recorded before its file is renamed into place, which lets retention remove contexts
        /// without a lock (see ``ContextDirectory``). A caller that may already read the context is answered at once;
        /// any other caller sends the bytes, even when another token uploaded them before: proving it has them is
        /// what lets it read them.
        contexts.put("/:digest") { request, context -> Response in
            let user = try context.requireUser([.submitter], to: "upload contexts")
            let digest = try Self.digestParameter(context)
            let directory = ContextDirectory(options.contextsDirectory)
            let final = directory.file(for: digest)
            if options.sharedContexts || FileManager.default.fileExists(atPath: final.path),
                try await store.mayReadContext(digest: digest, grant: user), try await markUsed(digest),
                let size = try await store.contextSize(digest: digest)
            {
                return try Self.json(ContextUploadResponse(digest: digest.description, size: size, existed: true))
            }
            let partial = directory.uploadFile()
            var keep = false
            defer { if !keep { try? FileManager.default.removeItem(at: partial) } }
            // Written through NIO's thread pool, never with blocking calls on the concurrency pool.
            let tally = UploadTally(digest.algorithm)
            let limit = options.maxContextBytes
            do {
                try FileManager.default.createDirectory(at: options.contextsDirectory, withIntermediateDirectories: true)
                try await FileIO().writeFile(
                    contents: request.body.map { buffer in
                        try tally.add(buffer, limit: limit)
                        return buffer
                    }, path: partial.path, context: context)
            } catch {
                throw storageError(error, writing: "the context") ?? error
            }
            let (actual, size) = tally.finish()
            guard actual == digest else {
                throw APIError(
                    .badRequest, code: "DIGEST_MISMATCH",
                    "the uploaded context has digest \(actual), not \(digest) as the URL says; nothing was kept",
                    field: "digest")
            }
            if options.sharedContexts {
                // Every replica must find it: the chunks are in the database before the row that says it exists.
                try await store.storeSharedContext(digest: digest, file: partial)
            }
            let existed = try await store.recordContext(digest: digest, size: size, uploadedBy: user.tokenId)
            // Same digest, same bytes: replacing a file a concurrent upload put in place changes nothing.
            guard rename(partial.path, final.path) == 0 else {
                let error = ContextDirectoryError(operation: "move into place", path: final.path, code: errno)
                throw storageError(error, writing: "the context") ?? error
            }
            keep = true
            return try Self.json(
                ContextUploadResponse(digest: digest.description, size: size, existed: existed),
                status: existed ? .ok : .created)
        }

        contexts.get("/:digest") { _, context -> Response in
            switch context.principal {
            case .agent: break
            default: _ = try context.requireUser([.submitter, .viewer], to: "download contexts")
            }
            let digest = try Self.digestParameter(context)
            if case .agent(let agentId, _, _) = context.principal,
                try await !store.agentMayReadContext(agentId: agentId, digest: digest)
            {
                throw APIError(
                    .forbidden, code: "FORBIDDEN", "an agent may download only the contexts of jobs currently leased to it")
            }
            // A user reads only what it uploaded or what builds in its scopes use; anything else is 404, as if
            // there were no such context.
            if case .user(let user) = context.principal, try await !store.mayReadContext(digest: digest, grant: user) {
                throw APIError(.notFound, code: "NOT_FOUND", "no context with digest \(digest)")
            }
            let file = contextFile(digest)
            guard try await store.hasContext(digest: digest), try await hasLocalCopy(digest) else {
                throw APIError(.notFound, code: "NOT_FOUND", "no context with digest \(digest)")
            }
            if case .agent = context.principal {
                // Retention counts from the last use; a download that cannot record it (full disk) still proceeds.
                _ = try? await store.touchContext(digest: digest)
            }
            let body = try await FileIO().loadFile(path: file.path, context: context)
            return Response(status: .ok, headers: [.contentType: "application/gzip"], body: body)
        }
    }

    /// Marks a context used now, which keeps retention from deleting it between a check and the submission
    /// that follows; answers whether it is recorded. When the disk is full the answer comes from a read.
    func markUsed(_ digest: Digest) async throws -> Bool {
        do { return try await store.touchContext(digest: digest) } catch StoreError.storageUnavailable {
            return try await store.hasContext(digest: digest)
        }
    }

    /// Whether the contexts directory holds `digest`, fetching it from the database first when contexts are shared
    /// and this replica has not seen it yet.
    func hasLocalCopy(_ digest: Digest) async throws -> Bool {
        let file = contextFile(digest)
        if FileManager.default.fileExists(atPath: file.path) { return true }
        guard options.sharedContexts else { return false }
        let directory = ContextDirectory(options.contextsDirectory)
        let partial = directory.uploadFile()
        defer { try? FileManager.default.removeItem(at: partial) }
        do {
            try FileManager.default.createDirectory(at: options.contextsDirectory, withIntermediateDirectories: true)
            guard try await store.loadSharedContext(digest: digest, into: partial) else { return false }
        } catch {
            throw storageError(error, writing: "the context") ?? error
        }
        guard rename(partial.path, file.path) == 0 else {
            let error = ContextDirectoryError(operation: "move into place", path: file.path, code: errno)
            throw storageError(error, writing: "the context") ?? error
        }
        return true
    }

    func contextFile(_ digest: Digest) -> URL {
        ContextDirectory(options.contextsDirectory).file(for: digest)
    }

    /// A 507 naming the contexts directory when `error` is the file system refusing a write (no space, quota,
    /// read-only, I/O error), recorded so readiness reports it; nil for any other error.
    func storageError(_ error: any Error, writing what: String) -> APIError? {
        guard let code = StorageErrors.code(of: error), StorageErrors.isStorageFailure(code) else { return nil }
        let cause = String(cString: strerror(code))
        let directory = options.contextsDirectory.path
        store.recordStorageFailure("cannot write \(what) to \(directory): \(cause)")
        return APIError(
            HTTPResponse.Status(code: 507, reasonPhrase: "Insufficient Storage"), code: "STORAGE_UNAVAILABLE",
            "the coordinator cannot write \(what) to its contexts directory \(directory): \(cause); nothing was kept. "
                + "Free space on that file system and upload again")
    }

    static func digestParameter(_ context: CoordinatorContext) throws -> Digest {
        let text = try parameter("digest", context)
        do { return try Digest(parsing: text) } catch { throw APIError.badRequest(error.description, field: "digest") }
    }
}
