import CoreMetrics
import Hummingbird
import Metrics

/// Counts and times every request by route template (`/api/v1/builds/{id}`, never the path with its IDs), method
/// and status code, into `manifold_http_requests_total` and `manifold_http_request_duration_seconds`.
///
/// Hummingbird's own `MetricsMiddleware` records through the process-wide `MetricsSystem`; this one takes the
/// coordinator's factory, so coordinators sharing a process keep separate counts. A response is timed until its
/// body is written, so a held poll or a followed log counts its whole length.
struct RequestMetricsMiddleware<Context: RequestContext>: RouterMiddleware {
    let factory: any MetricsFactory

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response
    {
        let start = ContinuousClock.now
        do {
            var response = try await next(request, context)
            let status = response.status.code
            let body = response.body
            // Hummingbird's post-write hook is package-internal; this wrapper does the same with public API.
            response.body = ResponseBody(contentLength: body.contentLength) { writer in
                do {
                    try await body.write(writer)
                } catch {
                    record(request, context, status: status, since: start)
                    throw error
                }
                record(request, context, status: status, since: start)
            }
            return response
        } catch {
            record(request, context, status: (error as? any HTTPResponseError)?.status.code ?? 500, since: start)
            throw error
        }
    }

    private func record(_ request: Request, _ context: Context, status: Int, since start: ContinuousClock.Instant) {
        // Router middleware runs after the route matched, so the template is known; "unmatched" is a safeguard.
        let dimensions = [
            ("route", context.endpointPath ?? "unmatched"), ("method", request.method.rawValue), ("status", String(status)),
        ]
        // The histogram first: a scrape that sees the count sees the latency too.
        CoreMetrics.Timer(label: "manifold_http_request_duration_seconds", dimensions: dimensions, factory: factory)
            .record(duration: ContinuousClock.now - start)
        CoreMetrics.Counter(label: "manifold_http_requests_total", dimensions: dimensions, factory: factory).increment()
    }
}
