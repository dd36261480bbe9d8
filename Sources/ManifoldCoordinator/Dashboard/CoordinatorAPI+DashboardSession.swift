import Foundation
import HTTPTypes
import Hummingbird
import ManifoldAPI
import ManifoldStore

extension CoordinatorAPI {
    /// `GET /sign-in`, `POST /sign-in`, `POST /sign-out`.
    ///
    /// The sign-in form carries a CSRF token bound to a cookie of its own (so another site cannot sign a browser in with
    /// the attacker's token); a wrong token counts against `auth_failures_per_minute` like a wrong bearer token.
    func addSignInRoutes(to dashboard: RouterGroup<CoordinatorContext>) {
        dashboard.get("/sign-in") { request, context -> Response in
            let next = Self.safeNext(request.uri.queryParameters.get("next"))
            if case .user = context.principal, context.dashboardSession != nil {
                return Response(status: .seeOther, headers: [.location: next])
            }
            return signInPage(next: next, request: request, context: context, flash: nil, status: .ok)
        }

        dashboard.post("/sign-in") { request, context -> Response in
            try Self.refuseCrossSite(request)
            let form = try await Self.formFields(request)
            let next = Self.safeNext(form["next"])
            guard let nonce = DashboardSessions.cookie(DashboardSessions.signInCookieName, in: request.headers[values: .cookie]),
                sessions.checkCSRF(form["csrf"], nonce: nonce)
            else {
                return signInPage(
                    next: next, request: nil, context: context,
                    flash: "The sign-in form had expired or did not come from this page; sign in again.", status: .forbidden)
            }
            if let seconds = failures.retryAfter(context.clientAddress) {
                var response = signInPage(
                    next: next, request: request, context: context,
                    flash: "Too many failed sign-ins from \(context.clientAddress); try again in \(seconds) s.",
                    status: .tooManyRequests)
                response.headers[.retryAfter] = "\(seconds)"
                return response
            }
            let token = (form["token"] ?? "").trimmingCharacters(in: .whitespacesAndNewlines)
            var refusal = "That token is unknown or revoked."
            var grant: TokenGrant? = nil
            if !token.isEmpty {
                do {
                    switch try await store.principal(forSecretHash: hash(token)) {
                    case .user(let found) where found.role != .join: grant = found
                    case .user: refusal = "A join token only joins agents; sign in with a viewer, submitter or admin token."
                    case .agent: refusal = "That is an agent's credential; sign in with a viewer, submitter or admin token."
                    case nil: break
                    }
                } catch StoreError.unauthenticated(let message) {
                    refusal = message
                }
            } else {
                refusal = "Give an API token."
            }
            guard let grant else {
                failures.recordFailure(context.clientAddress)
                return signInPage(next: next, request: request, context: context, flash: refusal, status: .unauthorized)
            }
            let now = store.currentTime()
            let (value, session) = sessions.issue(tokenId: grant.tokenId, now: now, tokenExpiresAt: grant.expiresAt)
            context.logger.info(
                "dashboard sign-in", metadata: ["token": "\(grant.tokenId)", "name": "\(grant.name)", "role": "\(grant.role)"])
            var response = Response(status: .seeOther, headers: [.location: next])
            response.headers.append(
                HTTPField(
                    name: .setCookie,
                    value: DashboardSessions.setCookie(
                        name: DashboardSessions.cookieName, value: value,
                        maxAge: Int(session.expiresAt.timeIntervalSince(now).rounded(.down)))))
            response.headers.append(
                HTTPField(
                    name: .setCookie,
                    value: DashboardSessions.setCookie(name: DashboardSessions.signInCookieName, value: "", maxAge: 0)))
            return response
        }

        dashboard.post("/sign-out") { request, context -> Response in
            _ = try await actionForm(request, context: context)
            var response = Response(status: .seeOther, headers: [.location: "/sign-in"])
            response.headers.append(
                HTTPField(
                    name: .setCookie, value: DashboardSessions.setCookie(name: DashboardSessions.cookieName, value: "", maxAge: 0)
                ))
            return response
        }
    }

    /// The sign-in form. Its CSRF nonce is the one the browser's sign-in cookie already holds (so sign-in pages open in
    /// several tabs all work), or a new one.
    func signInPage(
        next: String, request: Request?, context: CoordinatorContext, flash: String?, status: HTTPResponse.Status
    ) -> Response {
        let existing = request.flatMap {
            DashboardSessions.cookie(DashboardSessions.signInCookieName, in: $0.headers[values: .cookie])
        }
        let nonce =
            existing.flatMap {
                $0.count == 24 && $0.allSatisfy { $0.isLetter || $0.isNumber || $0 == "-" || $0 == "_" } ? $0 : nil
            }
            ?? DashboardSessions.randomNonce()
        let page = DashboardPage.SignIn(
            base: DashboardPage.Base(flash: flash), signInCSRF: sessions.csrfToken(nonce: nonce), next: next)
        var response = Self.html(DashboardTemplates.render(page, "sign-in"), status: status)
        response.headers.append(
            HTTPField(
                name: .setCookie,
                value: DashboardSessions.setCookie(name: DashboardSessions.signInCookieName, value: nonce, maxAge: 3600)))
        return response
    }

    /// Where to go after signing in: a dashboard path of this coordinator, never another site (`//evil.example`,
    /// `https://…`, `/\evil.example`); `/builds` otherwise.
    static func safeNext(_ next: String?) -> String {
        guard let next, next.hasPrefix("/"), !next.hasPrefix("//"), !next.contains("\\"),
            !next.unicodeScalars.contains(where: { $0.value < 0x21 || $0.value == 0x7F }), next.count <= 2000
        else { return "/builds" }
        let path = String(next.prefix { $0 != "?" && $0 != "#" })
        guard isDashboardPath(path), !["/sign-in", "/sign-out", "/"].contains(path), !path.hasPrefix("/live/"),
            !path.hasPrefix("/static/")
        else { return "/builds" }
        return next
    }

    // MARK: - Live updates

    /// Streams the pages' scripts follow: a build's events (Server-Sent Events with `Last-Event-ID`), a signal when
    /// any build or agent changed (for the lists), and an attempt's log as it grows. They take the token's stream slots
    /// (`max_streams_per_token`) and end when the token is revoked or expires, like the API's.
    func addLiveRoutes(to dashboard: RouterGroup<CoordinatorContext>) {
        dashboard.get("/live/builds/:id/events") { request, context -> Response in
            let user = try context.requireUser([.viewer, .submitter], to: "watch builds")
            let id = try Self.parameter("id", context)
            var resumeFrom: Int64 = 0
            if let header = request.headers[HTTPField.Name("Last-Event-ID")!], let last = Int64(header), last >= 0 {
                resumeFrom = last
            } else if let after = request.uri.queryParameters.get("after"), let last = Int64(after), last >= 0 {
                resumeFrom = last
            }
            let build = try await visibleBuild(id, to: user)
            // A final build with nothing new: 204 tells EventSource to stop reconnecting.
            if build.state.isFinal, try await store.events(buildId: id, after: resumeFrom, limit: 1).isEmpty {
                return Response(status: .noContent)
            }
            let slot = try streams.open(tokenId: user.tokenId, expiresAt: user.expiresAt)
            let after = resumeFrom
            return Response(
                status: .ok, headers: [.contentType: "text/event-stream", .cacheControl: "no-cache"],
                body: ResponseBody { writer in
                    try await streamEvents(buildId: id, after: after, slot: slot, writer: &writer)
                    try await writer.finish(nil)
                })
        }

        dashboard.get("/live/changes") { _, context -> Response in
            let user = try context.requireUser([.viewer, .submitter], to: "watch builds")
            let slot = try streams.open(tokenId: user.tokenId, expiresAt: user.expiresAt)
            let notifier = self.notifier
            return Response(
                status: .ok, headers: [.contentType: "text/event-stream", .cacheControl: "no-cache"],
                body: ResponseBody { writer in
                    var generation = notifier.generation(of: .progress)
                    var sent = 0
                    while !Task.isCancelled, !slot.isOver, !notifier.isShuttingDown {
                        let woken = await notifier.wait(for: .progress, after: generation, until: .now + .seconds(15))
                        if slot.isOver || notifier.isShuttingDown { break }
                        if woken {
                            generation = notifier.generation(of: .progress)
                            sent += 1
                            try await writer.write(ByteBuffer(string: "id: \(sent)\nevent: change\ndata: {}\n\n"))
                            // At most one signal every two seconds (log chunks notify progress too): the page fetches
                            // itself again on each.
                            try? await Task.sleep(for: .seconds(2))
                        } else {
                            try await writer.write(ByteBuffer(string: ": keep-alive\n\n"))
                        }
                    }
                    try await writer.finish(nil)
                })
        }

        dashboard.get("/live/builds/:id/log") { request, context -> Response in
            let user = try context.requireUser([.viewer, .submitter], to: "read logs")
            let id = try Self.parameter("id", context)
            let build = try await visibleBuild(id, to: user)
            let query = request.uri.queryParameters
            let job = try Self.job(of: build, platform: query.get("platform") ?? "")
            let attempt = try Self.number(query.get("attempt"), name: "attempt", as: Int.self, minimum: 1)
            let offset = try Self.number(query.get("offset"), name: "offset", as: Int64.self, minimum: 0) ?? 0
            let slot = try streams.open(tokenId: user.tokenId, expiresAt: user.expiresAt)
            let platform = job.platform.description
            return Response(
                status: .ok, headers: [.contentType: "text/plain; charset=utf-8", .cacheControl: "no-cache"],
                body: ResponseBody { writer in
                    try await followLog(
                        buildId: id, platform: platform, attempt: attempt, from: offset, slot: slot, writer: &writer)
                    try await writer.finish(nil)
                })
        }
    }
}
