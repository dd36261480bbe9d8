import Foundation
import HTTPTypes
import Hummingbird
import ManifoldAPI
import ManifoldCore
import ManifoldStore
import Tracing

extension CoordinatorAPI {
    func addBuildRoutes(to router: Router<CoordinatorContext>) {
        let builds = router.group("/api/v1/builds")

        builds.post { request, context -> Response in
            let user = try context.requireUser([.submitter], to: "submit builds")
            let spec = try await decode(BuildSpec.self, from: request, context: context)
            guard spec.platforms.count <= options.maxPlatformsPerBuild else {
                throw APIError.badRequest(
                    "the build asks for \(spec.platforms.count) platforms; at most \(options.maxPlatformsPerBuild) are allowed "
                        + "(max_platforms_per_build)", field: "platforms")
            }
            try spec.validate()
            if let template = spec.childTagTemplate, let problem = CoordinatorSettings.problem(withChildTagTemplate: template) {
                throw APIError.badRequest(
                    "\"\(template)\" is not a usable child tag template; give \(problem)", field: "childTagTemplate")
            }
            try checkDestination(spec.image, for: user)
            // Naming another team's context would hand its source to this build (and make it readable through it):
            // the submitter must have uploaded the bytes itself, or use them through a build its scopes cover.
            if case .upload(let digest) = spec.context, try await !store.mayReadContext(digest: digest, grant: user) {
                throw APIError.badRequest(
                    "no uploaded context has digest \(digest); upload it first (PUT /api/v1/contexts/\(digest))",
                    field: "context.digest")
            }
            // Held polls are woken as soon as the build is stored, not after its view is read back.
            let notifier = self.notifier
            let hints = spec.platforms.map { WorkNotifier.WorkHint(platform: $0.platform, labels: $0.agentLabels ?? [:]) }
            let build = try await submit(spec, user: user) { id in notifier.notifyWork(hints, also: .progress, build: id) }
            metrics.increment("manifold_builds_submitted_total")
            context.logger.info("build submitted", metadata: ["build": "\(build.id)", "image": "\(spec.image)"])
            return try Self.json(build, status: .created)
        }

        builds.get { request, context -> Response in
            let user = try context.requireUser([.viewer, .submitter], to: "list builds")
            let query = request.uri.queryParameters
            var filter = BuildQuery()
            if let state = query.get("state") {
                guard let parsed = BuildState(rawValue: state) else {
                    throw APIError.badRequest(
                        "state \"\(state)\" is not one of \(BuildState.allCases.map(\.rawValue).joined(separator: ", "))",
                        field: "state")
                }
                filter.state = parsed
            }
            filter.image = query.get("image")
            filter.before = query.get("before")
            if let limit = query.get("limit") {
                guard let value = Int(limit), (1...500).contains(value) else {
                    throw APIError.badRequest("limit \"\(limit)\" must be 1…500", field: "limit")
                }
                filter.limit = value
            }
            if user.role != .admin, user.repositories != nil {
                filter.visible = { image in user.covers(image: image) }
            }
            let page = try await store.listBuilds(filter)
            return try Self.json(BuildList(builds: page, next: page.count == filter.limit ? page.last?.id : nil))
        }

        builds.get("/:id") { _, context -> Response in
            let user = try context.requireUser([.viewer, .submitter], to: "read builds")
            return try Self.json(try await visibleBuild(try Self.parameter("id", context), to: user))
        }

        builds.post("/:id/cancel") { _, context -> Response in
            let user = try context.requireUser([.submitter], to: "cancel builds")
            let id = try Self.parameter("id", context)
            _ = try await visibleBuild(id, to: user)
            let build = try await store.cancelBuild(id: id, by: user.name)
            notifier.notify([.work, .progress])
            return try Self.json(build)
        }

        builds.post("/:id/retry") { request, context -> Response in
            let user = try context.requireUser([.submitter], to: "retry builds")
            let id = try Self.parameter("id", context)
            _ = try await visibleBuild(id, to: user)
            let retry = try await decode(RetryRequest.self, from: request, context: context)
            // A retry of a finished build reopens it: it counts against the caller's quota, as a submission does.
            let build = try await store.retryJob(
                buildId: id, platform: retry.platform, secrets: retry.secrets, token: user.tokenId,
                maxUnfinished: options.maxQueuedBuildsPerToken)
            notifier.notify([.work, .progress])
            return try Self.json(build)
        }

        builds.get("/:id/events") { request, context -> Response in
            let user = try context.requireUser([.viewer, .submitter], to: "watch builds")
            let id = try Self.parameter("id", context)
            let resumeFrom: Int64
            if let header = request.headers[HTTPField.Name("Last-Event-ID")!] {
                guard let id = Int64(header.trimmingCharacters(in: .whitespaces)), id >= 0 else {
                    throw APIError.badRequest(
                        "Last-Event-ID \"\(header)\" is not an event id; send the id of the last event received",
                        field: "Last-Event-ID")
                }
                resumeFrom = id
            } else if let after = request.uri.queryParameters.get("after") {
                guard let id = Int64(after), id >= 0 else {
                    throw APIError.badRequest("after=\(after) is not an event id (a number ≥ 0)", field: "after")
                }
                resumeFrom = id
            } else {
                resumeFrom = 0
            }
            _ = try await visibleBuild(id, to: user)  // 404 before the stream starts
            let slot = try streams.open(tokenId: user.tokenId, expiresAt: user.expiresAt)
            return Response(
                status: .ok,
                headers: [.contentType: "text/event-stream", .cacheControl: "no-cache"],
                body: ResponseBody { writer in
                    try await streamEvents(buildId: id, after: resumeFrom, slot: slot, writer: &writer)
                    try await writer.finish(nil)
                })
        }

        builds.get("/:id/logs") { request, context -> Response in
            let user = try context.requireUser([.viewer, .submitter], to: "read logs")
            let id = try Self.parameter("id", context)
            _ = try await visibleBuild(id, to: user)
            let query = request.uri.queryParameters
            guard let platform = query.get("platform") else {
                throw APIError.badRequest("give ?platform=os/arch[/variant]", field: "platform")
            }
            let attempt = try Self.number(query.get("attempt"), name: "attempt", as: Int.self, minimum: 1)
            let offset = try Self.number(query.get("offset"), name: "offset", as: Int64.self, minimum: 0) ?? 0
            let follow = query.get("follow") == "true" || query.get("follow") == "1"
            let first = try await store.readLog(buildId: id, platform: platform, attempt: attempt, offset: offset)
            if first.data.isEmpty, offset < first.size, let removed = try await store.logRemoval(epoch: first.epoch) {
                throw APIError(
                    .gone, code: "LOG_REMOVED",
                    "this log (\(first.size) bytes) was removed by retention on \(removed.formatted(.iso8601)) "
                        + "(retention_days); the build's result, digests and list are kept")
            }
            guard follow else {
                return Response(
                    status: .ok,
                    headers: [.contentType: "text/plain; charset=utf-8", HTTPField.Name("X-Log-Size")!: "\(first.size)"],
                    body: ResponseBody(byteBuffer: ByteBuffer(bytes: first.data)))
            }
            let slot = try streams.open(tokenId: user.tokenId, expiresAt: user.expiresAt)
            return Response(
                status: .ok, headers: [.contentType: "text/plain; charset=utf-8", .cacheControl: "no-cache"],
                body: ResponseBody { writer in
                    try await followLog(
                        buildId: id, platform: platform, attempt: attempt, from: offset, slot: slot, writer: &writer)
                    try await writer.finish(nil)
                })
        }
    }

    /// The build, if `user`'s scopes cover its image; otherwise 404 as if it did not exist, so a token learns
    /// nothing about builds outside its scopes.
    /// Records the build; with tracing on, under the root span of its trace, whose context is stored with it.
    func submit(_ spec: BuildSpec, user: TokenGrant, committed: @escaping @Sendable (String) -> Void) async throws -> BuildView {
        guard tracing.isEnabled else {
            return try await store.submitBuild(
                spec, submittedBy: user.name, token: user.tokenId, maxUnfinished: options.maxQueuedBuildsPerToken,
                committed: committed)
        }
        let span = tracing.startSpan(
            "build", parent: .topLevel, kind: .server,
            attributes: [
                "manifold.image": .string(spec.image), "manifold.tags": .string(spec.tags.joined(separator: ",")),
                "manifold.platforms": .string(spec.platforms.map(\.platform.description).joined(separator: ",")),
            ])
        defer { span.end() }
        do {
            let build = try await store.submitBuild(
                spec, submittedBy: user.name, token: user.tokenId, maxUnfinished: options.maxQueuedBuildsPerToken,
                traceparent: tracing.traceparent(of: span), committed: committed)
            span.attributes["manifold.build"] = build.id
            return build
        } catch {
            span.recordError(error)
            span.setStatus(SpanStatus(code: .error))
            throw error
        }
    }

    func visibleBuild(_ id: String, to user: TokenGrant) async throws -> BuildView {
        let build = try await store.build(id: id)
        guard user.covers(image: build.image) else { throw StoreError.notFound(kind: "build", id: id) }
        return build
    }

    /// Refuses a destination outside `allowed_registries` (403 naming them) or outside the token's repository
    /// scopes (403 naming the scopes).
    func checkDestination(_ image: String, for user: TokenGrant) throws {
        let reference: ImageReference
        do { reference = try ImageReference(parsing: image) } catch {
            throw APIError.badRequest("image \"\(image)\" is not an image reference: \(error)", field: "image")
        }
        guard RegistryPattern.allows(options.allowedRegistries, registry: reference.registry) else {
            let allowed =
                options.allowedRegistries.isEmpty
                ? "none is allowed yet (an admin lists them under allowed_registries)"
                : "allowed: \(options.allowedRegistries.map(\.description).joined(separator: ", "))"
            throw APIError(
                .forbidden, code: "REGISTRY_NOT_ALLOWED",
                "registry \(reference.registry) of image \(image) is not in allowed_registries; \(allowed)", field: "image")
        }
        guard user.covers(image: image) else {
            throw APIError(
                .forbidden, code: "OUT_OF_SCOPE",
                "token \"\(user.name)\" may build only into \(user.scopeDescription); \(reference.registry)/\(reference.repository) "
                    + "is outside its scopes", field: "image")
        }
    }

    /// Writes events as Server-Sent Events from `after` on, waiting for new ones, until the build is final and
    /// everything has been sent, or the caller's token is revoked or expires. A comment line every 15 s keeps
    /// proxies from closing an idle stream.
    func streamEvents(buildId: String, after: Int64, slot: StreamSlot, writer: inout any ResponseBodyWriter) async throws {
        var last = after
        while !Task.isCancelled, !slot.isOver {
            let generation = notifier.generation(of: .progress, build: buildId)
            let page = try await store.eventPage(buildId: buildId, after: last)
            for event in page.events {
                let data = String(decoding: try APICoding.encoder().encode(event), as: UTF8.self)
                try await writer.write(ByteBuffer(string: "id: \(event.id)\nevent: \(event.type)\ndata: \(data)\n\n"))
                last = event.id
            }
            // The page read with the final state holds the final transition's events: the stream ends right after
            // them, and the watcher with it.
            if page.isLast { return }
            if page.events.isEmpty {
                if notifier.isShuttingDown { return }
                let woken = await notifier.wait(
                    for: .progress, after: generation, until: .now + .seconds(15), build: buildId)
                if !woken { try await writer.write(ByteBuffer(string: ": keep-alive\n\n")) }
            }
        }
    }

    /// Streams an attempt's log as it grows, until the attempt has finished and every byte was sent, or the
    /// caller's token is revoked or expires.
    func followLog(
        buildId: String, platform: String, attempt: Int?, from offset: Int64, slot: StreamSlot,
        writer: inout any ResponseBodyWriter
    ) async throws {
        var position = offset
        var epoch: Int64? = nil
        while !Task.isCancelled, !slot.isOver {
            let generation = notifier.generation(of: .progress, build: buildId)
            let chunk = try await store.readLog(buildId: buildId, platform: platform, attempt: attempt, offset: position)
            // A new attempt started: the followed attempt's log is over. Before the first attempt there is nothing yet.
            if let epoch, epoch != 0, chunk.epoch != epoch, attempt == nil { return }
            epoch = chunk.epoch
            if !chunk.data.isEmpty {
                try await writer.write(ByteBuffer(bytes: chunk.data))
                position += Int64(chunk.data.count)
                continue
            }
            if (chunk.epoch != 0 && chunk.finished && position >= chunk.size) || notifier.isShuttingDown { return }
            if chunk.finished, try await store.logRemoval(epoch: chunk.epoch) != nil { return }
            await notifier.wait(for: .progress, after: generation, until: .now + .seconds(15), build: buildId)
        }
    }

    /// A numeric query parameter, or nil when absent; anything else is a 400 naming it.
    static func number<N: FixedWidthInteger>(_ text: String?, name: String, as type: N.Type, minimum: N) throws -> N? {
        guard let text else { return nil }
        guard let value = N(text), value >= minimum else {
            throw APIError.badRequest("\(name)=\(text) is not a whole number ≥ \(minimum)", field: name)
        }
        return value
    }
}
