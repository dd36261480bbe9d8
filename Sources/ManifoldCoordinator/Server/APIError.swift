import Foundation
import Hummingbird
import ManifoldAPI
import ManifoldStore

/// An error answer with a JSON body naming what was wrong: `{"error": {"code", "message", "field"}}`.
public struct APIError: HTTPResponseError, CustomStringConvertible {
    public var status: HTTPResponse.Status
    public var code: String
    public var message: String
    public var field: String?
    public var headers: HTTPFields = [:]

    public init(_ status: HTTPResponse.Status, code: String, _ message: String, field: String? = nil) {
        self.status = status
        self.code = code
        self.message = message
        self.field = field
    }

    public var description: String { "\(status.code) \(code): \(message)" }

    public func response(from request: Request, context: some RequestContext) throws -> Response {
        let body = try APICoding.encoder().encode(ErrorResponse(code: code, message: message, field: field))
        var headers = self.headers
        headers[.contentType] = "application/json"
        return Response(status: status, headers: headers, body: ResponseBody(byteBuffer: ByteBuffer(bytes: body)))
    }

    static let unauthenticated = APIError(
        .unauthorized, code: "UNAUTHENTICATED",
        "send a token as \"Authorization: Bearer TOKEN\" (manifold login, or the agent's credential)")
    static let invalidToken = APIError(.unauthorized, code: "UNAUTHENTICATED", "the token is unknown or revoked")

    static func forbidden(_ action: String, needs roles: [Role]) -> APIError {
        APIError(
            .forbidden, code: "FORBIDDEN",
            "this token may not \(action); it needs the \(roles.map(\.rawValue).joined(separator: " or ")) role")
    }

    static func badRequest(_ message: String, field: String? = nil) -> APIError {
        APIError(.badRequest, code: "INVALID", message, field: field)
    }

    /// Maps the store's refusals to statuses: missing → 404, stale attempt or conflict → 409, invalid → 400.
    static func from(_ error: StoreError) -> APIError {
        switch error {
        case .notFound: return APIError(.notFound, code: "NOT_FOUND", error.description)
        case .staleAttempt: return APIError(.conflict, code: "STALE_ATTEMPT", error.description)
        case .conflict: return APIError(.conflict, code: "CONFLICT", error.description)
        case .invalid(let field, let message): return APIError(.badRequest, code: "INVALID", message, field: field)
        case .limitExceeded(let message): return APIError(.contentTooLarge, code: "TOO_LARGE", message)
        case .forbidden(let message): return APIError(.forbidden, code: "FORBIDDEN", message)
        case .unauthenticated(let message): return APIError(.unauthorized, code: "UNAUTHENTICATED", message)
        case .quotaExceeded(let message): return APIError(.tooManyRequests, code: "TOO_MANY", message)
        case .storageUnavailable(let message):
            return APIError(
                HTTPResponse.Status(code: 507, reasonPhrase: "Insufficient Storage"), code: "STORAGE_UNAVAILABLE", message)
        }
    }
}

/// Turns every error a handler throws into a JSON answer; internal errors are logged, not shown.
struct ErrorMiddleware<Context: RequestContext>: RouterMiddleware {
    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response
    {
        do {
            return try await next(request, context)
        } catch let error as APIError {
            throw error
        } catch let error as StoreError {
            throw APIError.from(error)
        } catch let error as APIValidationError {
            throw APIError.badRequest(error.message, field: error.field)
        } catch let error as DecodingError {
            throw APIError.badRequest(Self.describe(error), field: Self.field(of: error))
        } catch let error as HTTPError {
            throw APIError(
                error.status, code: error.status.code == 413 ? "TOO_LARGE" : "HTTP_\(error.status.code)",
                error.body ?? error.status.reasonPhrase)
        } catch let error where StorageErrors.code(of: error).map(StorageErrors.isStorageFailure) == true {
            context.logger.error("request failed: storage", metadata: ["path": "\(request.uri.path)", "error": "\(error)"])
            throw APIError(
                HTTPResponse.Status(code: 507, reasonPhrase: "Insufficient Storage"), code: "STORAGE_UNAVAILABLE",
                "the coordinator cannot write its state directory (\(error)); free space on its file system and retry")
        } catch is CancellationError {
            throw APIError(.serviceUnavailable, code: "SHUTTING_DOWN", "the coordinator is shutting down; retry")
        } catch {
            context.logger.error("request failed", metadata: ["path": "\(request.uri.path)", "error": "\(error)"])
            throw APIError(.internalServerError, code: "INTERNAL", "the coordinator failed to handle the request; see its log")
        }
    }

    static func field(of error: DecodingError) -> String? {
        let path: [any CodingKey]
        switch error {
        case .keyNotFound(let key, let context): path = context.codingPath + [key]
        case .typeMismatch(_, let context), .valueNotFound(_, let context), .dataCorrupted(let context): path = context.codingPath
        @unknown default: return nil
        }
        let text = path.map { $0.intValue.map { "[\($0)]" } ?? ".\($0.stringValue)" }.joined()
        return text.isEmpty ? nil : String(text.drop { $0 == "." })
    }

    static func describe(_ error: DecodingError) -> String {
        switch error {
        case .keyNotFound(let key, _): return "the request body lacks \"\(key.stringValue)\""
        case .typeMismatch(let type, let context):
            return "expected \(type) at \(field(of: error) ?? "the top level"): \(context.debugDescription)"
        case .valueNotFound(let type, _): return "expected \(type) at \(field(of: error) ?? "the top level"), found null"
        case .dataCorrupted(let context):
            if context.codingPath.isEmpty { return "the request body is not valid JSON" }
            return context.debugDescription
        @unknown default: return "the request body could not be read"
        }
    }
}
