import Foundation
import Hummingbird
import ManifoldAPI
import ManifoldCore
import ManifoldStore

extension CoordinatorAPI {
    func addContextRoutes(to router: Router<CoordinatorContext>) {
        let contexts = router.group("/api/v1/contexts")

        contexts.head("/:digest") { _, context -> Response in
            _ = try context.requireUser([.submitter], to: "upload contexts")
            let digest = try Self.digestParameter(context)
            return Response(status: try await store.hasContext(digest: digest) ? .ok : .notFound)
        }

        /// Streams the upload to a temporary file while hashing it; only a body whose digest matches the URL is kept.
        contexts.put("/:digest") { request, context -> Response in
            _ = try context.requireUser([.submitter], to: "upload contexts")
            let digest = try Self.digestParameter(context)
            let final = contextFile(digest)
            if try await store.hasContext(digest: digest), FileManager.default.fileExists(atPath: final.path) {
                let size = (try? FileManager.default.attributesOfItem(atPath: final.path)[.size] as? Int64) ?? nil
                return try Self.json(ContextUploadResponse(digest: digest.description, size: size ?? 0, existed: true))
            }
            try FileManager.default.createDirectory(at: options.contextsDirectory, withIntermediateDirectories: true)
            let partial = options.contextsDirectory.appendingPathComponent(".upload-\(UUID().uuidString)")
            var keep = false
            defer { if !keep { try? FileManager.default.removeItem(at: partial) } }
            // Written through NIO's thread pool, never with blocking calls on the concurrency pool.
            let tally = UploadTally(digest.algorithm)
            let limit = options.maxContextBytes
            try await FileIO().writeFile(
                contents: request.body.map { buffer in
                    try tally.add(buffer, limit: limit)
                    return buffer
                }, path: partial.path, context: context)
            let (actual, size) = tally.finish()
            guard actual == digest else {
                throw APIError(
                    .badRequest, code: "DIGEST_MISMATCH",
                    "the uploaded context has digest \(actual), not \(digest) as the URL says; nothing was kept",
                    field: "digest")
            }
            // Same digest, same bytes: a concurrent or earlier upload that already put the file in place wins.
            if !FileManager.default.fileExists(atPath: final.path) {
                try FileManager.default.moveItem(at: partial, to: final)
            }
            keep = true
            try await store.recordContext(digest: digest, size: size)
            return try Self.json(ContextUploadResponse(digest: digest.description, size: size, existed: false), status: .created)
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
            let file = contextFile(digest)
            guard try await store.hasContext(digest: digest), FileManager.default.fileExists(atPath: file.path) else {
                throw APIError(.notFound, code: "NOT_FOUND", "no context with digest \(digest)")
            }
            let body = try await FileIO().loadFile(path: file.path, context: context)
            return Response(status: .ok, headers: [.contentType: "application/gzip"], body: body)
        }
    }

    func contextFile(_ digest: Digest) -> URL {
        options.contextsDirectory.appendingPathComponent("\(digest.algorithm.rawValue)-\(digest.hex).tar.gz")
    }

    static func digestParameter(_ context: CoordinatorContext) throws -> Digest {
        let text = try parameter("digest", context)
        do { return try Digest(parsing: text) } catch { throw APIError.badRequest(error.description, field: "digest") }
    }
}
