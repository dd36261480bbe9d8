import Foundation
import HTTPTypes
import Hummingbird
import ManifoldAPI
import ManifoldCore
import ManifoldStore

/// The web dashboard: server-rendered pages on the API's port and TLS. Signing in with an API token gives a session
/// cookie that stands for that token; every page and action then goes through the API's own checks
/// (`requireUser`, `visibleBuild`), so a token sees and does on the dashboard exactly what it may through the API.
extension CoordinatorAPI {
    /// How much of a log the log page shows at once: the last 256 KiB, with a link to the bytes before.
    static let logWindow: Int64 = 256 << 10
    /// Builds per page of the list.
    static let buildsPerPage = 50

    func addDashboardRoutes(to router: Router<CoordinatorContext>) {
        let dashboard = router.group().add(middleware: DashboardMiddleware(api: self))

        dashboard.get("/static/:file") { _, context -> Response in
            let name = try Self.parameter("file", context)
            guard let asset = DashboardAssets.files[name] else {
                throw APIError(.notFound, code: "NOT_FOUND", "no static file \(name)")
            }
            return Response(
                status: .ok,
                headers: [.contentType: asset.contentType, .cacheControl: "public, max-age=31536000, immutable"],
                body: ResponseBody(byteBuffer: ByteBuffer(string: asset.body)))
        }
        dashboard.get("/favicon.ico") { _, _ in Response(status: .noContent) }
        dashboard.get("/") { _, _ in Response(status: .seeOther, headers: [.location: "/builds"]) }

        addSignInRoutes(to: dashboard)

        dashboard.get("/builds") { request, context -> Response in
            let user = try context.requireUser([.viewer, .submitter], to: "list builds")
            return Self.html(DashboardTemplates.render(try await buildsPage(request, user: user, context: context), "builds"))
        }
        dashboard.get("/builds/:id") { _, context -> Response in
            let user = try context.requireUser([.viewer, .submitter], to: "read builds")
            let build = try await visibleBuild(try Self.parameter("id", context), to: user)
            return Self.html(DashboardTemplates.render(try await buildPage(build, user: user, context: context), "build"))
        }
        dashboard.post("/builds/:id/cancel") { request, context -> Response in
            _ = try await actionForm(request, context: context)
            let user = try context.requireUser([.submitter], to: "cancel builds")
            let id = try Self.parameter("id", context)
            _ = try await visibleBuild(id, to: user)
            _ = try await store.cancelBuild(id: id, by: user.name)
            notifier.notify([.work, .progress])
            context.logger.info("build cancelled on the dashboard", metadata: ["build": "\(id)", "by": "\(user.name)"])
            return Response(status: .seeOther, headers: [.location: "/builds/\(id)"])
        }
        dashboard.post("/builds/:id/retry") { request, context -> Response in
            let form = try await actionForm(request, context: context)
            let user = try context.requireUser([.submitter], to: "retry builds")
            let id = try Self.parameter("id", context)
            _ = try await visibleBuild(id, to: user)
            guard let platform = form["platform"], !platform.isEmpty else {
                throw APIError.badRequest("the retry form names no platform", field: "platform")
            }
            _ = try await store.retryJob(buildId: id, platform: platform, secrets: nil)
            notifier.notify([.work, .progress])
            context.logger.info(
                "platform retried on the dashboard",
                metadata: ["build": "\(id)", "platform": "\(platform)", "by": "\(user.name)"])
            return Response(status: .seeOther, headers: [.location: "/builds/\(id)"])
        }
        dashboard.get("/builds/:id/logs") { request, context -> Response in
            let user = try context.requireUser([.viewer, .submitter], to: "read logs")
            let build = try await visibleBuild(try Self.parameter("id", context), to: user)
            return Self.html(DashboardTemplates.render(try await logPage(build, request: request, context: context), "log"))
        }
        dashboard.get("/builds/:id/logs/raw") { request, context -> Response in
            let user = try context.requireUser([.viewer, .submitter], to: "read logs")
            let build = try await visibleBuild(try Self.parameter("id", context), to: user)
            return try await rawLog(build, request: request)
        }

        dashboard.get("/agents") { _, context -> Response in
            let user = try context.requireUser([.viewer, .submitter], to: "list agents")
            return Self.html(DashboardTemplates.render(try await agentsPage(user: user, context: context), "agents"))
        }
        dashboard.post("/agents/:id/state") { request, context -> Response in
            let form = try await actionForm(request, context: context)
            let user = try context.requireUser([], to: "change agents")
            guard let state = form["state"].flatMap(AgentState.init(rawValue:)), state != .left else {
                throw APIError.badRequest("set an agent active, draining or disabled", field: "state")
            }
            let agent = try await store.setAgentState(try Self.parameter("id", context), to: state)
            context.logger.info(
                "agent state changed on the dashboard",
                metadata: ["agent": "\(agent.name)", "state": "\(state)", "by": "\(user.name)"])
            notifier.notify([.work, .progress])
            return Response(status: .seeOther, headers: [.location: "/agents"])
        }

        addLiveRoutes(to: dashboard)
    }

    /// The layout's part of every page: who is signed in and the session's CSRF token for the forms.
    func basePage(_ context: CoordinatorContext, flash: String? = nil) -> DashboardPage.Base {
        var base = DashboardPage.Base(flash: flash)
        if case .user(let grant) = context.principal, let session = context.dashboardSession {
            base.user = DashboardPage.User(userName: grant.name, userRole: grant.role.rawValue)
            base.csrf = sessions.csrfToken(nonce: session.nonce)
        }
        return base
    }

    // MARK: - Builds

    func buildsPage(_ request: Request, user: TokenGrant, context: CoordinatorContext) async throws -> DashboardPage.Builds {
        let query = request.uri.queryParameters
        var filter = BuildQuery()
        filter.limit = Self.buildsPerPage
        let stateText = query.get("state").flatMap { $0.isEmpty ? nil : $0 }
        if let stateText {
            guard let state = BuildState(rawValue: stateText) else {
                throw APIError.badRequest(
                    "state \"\(stateText)\" is not one of \(BuildState.allCases.map(\.rawValue).joined(separator: ", "))",
                    field: "state")
            }
            filter.state = state
        }
        let image = query.get("image").map { $0.trimmingCharacters(in: .whitespaces) }.flatMap { $0.isEmpty ? nil : $0 }
        filter.image = image
        filter.before = query.get("before").flatMap { $0.isEmpty ? nil : $0 }
        if user.role != .admin, user.repositories != nil {
            filter.visible = { image in user.covers(image: image) }
        }
        let builds = try await store.listBuilds(filter)
        let now = store.currentTime()
        let rows = builds.map { build -> DashboardPage.BuildRow in
            let (stateClass, _) = DashboardFormat.style(build.state)
            return DashboardPage.BuildRow(
                id: build.id, shortId: Self.shortId(build.id), image: build.image,
                imageLink: "/builds" + Self.query([("image", build.image)]), tags: build.tags.joined(separator: ", "),
                buildState: build.state.rawValue, stateClass: stateClass,
                chips: build.jobs.map { job in
                    let (chipClass, symbol) = DashboardFormat.style(job.state)
                    return DashboardPage.Chip(
                        chipPlatform: job.platform.description, chipState: job.state.rawValue, chipClass: chipClass,
                        chipSymbol: symbol)
                },
                submittedBy: build.submittedBy ?? "", created: DashboardFormat.time(build.createdAt),
                createdISO: DashboardFormat.iso(build.createdAt),
                duration: DashboardFormat.duration(from: build.createdAt, to: build.finishedAt ?? now))
        }
        let options =
            [DashboardPage.Option(value: "", label: "any", selected: filter.state == nil)]
            + BuildState.allCases.map {
                DashboardPage.Option(value: $0.rawValue, label: $0.rawValue, selected: $0 == filter.state)
            }
        let filtered = filter.state != nil || image != nil
        return DashboardPage.Builds(
            base: basePage(context), stateOptions: options, imageFilter: image ?? "", builds: rows,
            emptyText: filter.before != nil
                ? "No older builds."
                : (filtered ? "No builds match these filters." : "No builds yet: submit one with manifold build submit."),
            newestLink: filter.before == nil ? nil : "/builds" + Self.query([("state", stateText), ("image", image)]),
            olderLink: builds.count == filter.limit
                ? "/builds" + Self.query([("state", stateText), ("image", image), ("before", builds.last?.id)]) : nil)
    }

    static func shortId(_ id: String) -> String {
        id.count > 16 ? String(id.prefix(16)) + "…" : id
    }

    func buildPage(_ build: BuildView, user: TokenGrant, context: CoordinatorContext) async throws -> DashboardPage.Build {
        // The whole event log is read in pages (a build has a few hundred events; `job.log` comes at most once a second
        // per attempt), the timeline shows the newest, and the live stream starts after the last one read.
        var lastId: Int64 = 0
        var timeline: [BuildEvent] = []
        var queuedAt: [String: Date] = [:]
        var truncated = false
        for _ in 0..<200 {
            let page = try await store.events(buildId: build.id, after: lastId, limit: 500)
            for event in page {
                lastId = event.id
                if let job = event.jobId, ["job.queued", "job.retrying", "job.released", "job.lost"].contains(event.type) {
                    queuedAt[job] = event.time
                }
                if event.type != "job.log" { timeline.append(event) }
            }
            if timeline.count > 400 {
                timeline.removeFirst(timeline.count - 300)
                truncated = true
            }
            if page.count < 500 { break }
        }
        let now = store.currentTime()
        let canAct = user.role == .submitter || user.role == .admin
        let rows = build.jobs.map { job -> DashboardPage.PlatformRow in
            let (stateClass, _) = DashboardFormat.style(job.state)
            var base = job.platform
            base.osVersion = nil
            let queued = queuedAt[job.id] ?? build.createdAt
            let childTag = job.imageReference.flatMap { try? ImageReference(parsing: $0) }?.tag ?? ""
            let verification: String
            switch job.state {
            case .verifying: verification = "checking the registry"
            case .succeeded: verification = job.digest == nil ? "" : "verified"
            case .failed where job.digest != nil: verification = "refused"
            default: verification = ""
            }
            var phase = job.phase
            if job.state != .assigned { phase = nil }
            var reason = job.reason
            if reason?.isEmpty == true { reason = nil }
            return DashboardPage.PlatformRow(
                rowKey: Self.elementKey(job.platform.description), platform: job.platform.description,
                platformBase: base.description,
                osVersion: job.platform.osVersion, jobState: job.state.rawValue, jobStateClass: stateClass, phase: phase,
                jobReason: reason, agent: job.agent ?? "",
                attemptText: job.attempts == 0 ? "–" : "\(job.attempts) of \(job.maxAttempts)",
                queued: DashboardFormat.clock(queued), queuedISO: DashboardFormat.iso(queued),
                queuedFull: DashboardFormat.time(queued), started: DashboardFormat.clock(job.startedAt),
                startedISO: job.startedAt.map { DashboardFormat.iso($0) }, startedFull: DashboardFormat.time(job.startedAt),
                finishedAt: DashboardFormat.clock(job.finishedAt), finishedAtISO: job.finishedAt.map { DashboardFormat.iso($0) },
                finishedAtFull: DashboardFormat.time(job.finishedAt),
                jobDuration: DashboardFormat.duration(
                    from: job.startedAt, to: job.finishedAt ?? (job.startedAt == nil ? nil : now)),
                digest: job.digest?.description, shortDigest: job.digest.map { String($0.description.prefix(19)) + "…" } ?? "",
                verification: verification, childTag: childTag,
                hasLog: job.attempts > 0,
                logURL: "/builds/\(build.id)/logs" + Self.query([("platform", job.platform.description)]),
                canRetry: canAct && job.state.isFinal && build.state != .cancelled)
        }
        var pulls: [DashboardPage.PullLine] = []
        if let digest = build.listDigest {
            pulls.append(
                .init(
                    pullId: "pull-digest", pullLabel: "Pull the list by digest",
                    pullCommand: "docker pull \(build.image)@\(digest)"))
            if let tag = build.tags.first {
                pulls.append(
                    .init(pullId: "pull-tag", pullLabel: "Pull by tag", pullCommand: "docker pull \(build.image):\(tag)"))
            }
            pulls.append(
                .init(
                    pullId: "inspect", pullLabel: "Inspect the list",
                    pullCommand: "skopeo inspect --raw docker://\(build.image)@\(digest)"))
        }
        let (stateClass, _) = DashboardFormat.style(build.state)
        return DashboardPage.Build(
            base: basePage(context), id: build.id, shortId: Self.shortId(build.id), image: build.image,
            tags: build.tags.joined(separator: ", "), buildState: build.state.rawValue, stateClass: stateClass,
            final: build.state.isFinal, eventsURL: "/live/builds/\(build.id)/events?after=\(lastId)",
            submittedBy: build.submittedBy ?? "", created: DashboardFormat.time(build.createdAt),
            createdISO: DashboardFormat.iso(build.createdAt), hasFinished: build.finishedAt != nil,
            finished: DashboardFormat.time(build.finishedAt), finishedISO: DashboardFormat.iso(build.finishedAt),
            duration: DashboardFormat.duration(from: build.createdAt, to: build.finishedAt ?? now),
            reason: build.reason.flatMap { $0.isEmpty ? nil : $0 }, notice: build.notice,
            listDigest: build.listDigest?.description, listMediaType: build.listMediaType, pullLines: pulls, canAct: canAct,
            canCancel: canAct && !build.state.isFinal, rows: rows,
            events: timeline.map { event in
                DashboardPage.Event(
                    eventISO: DashboardFormat.iso(event.time), eventTime: DashboardFormat.time(event.time), eventType: event.type,
                    eventPlatform: event.platform, eventText: DashboardFormat.describe(event))
            }, eventsTruncated: truncated, eventCount: timeline.count)
    }

    /// A string usable in an element id: letters, digits and dashes.
    static func elementKey(_ text: String) -> String {
        String(text.map { $0.isASCII && ($0.isLetter || $0.isNumber) ? $0 : "-" })
    }

    // MARK: - Logs

    /// The job of `build` for a platform as the user wrote it (`linux/amd64`, `windows/amd64:10.0.20348`).
    static func job(of build: BuildView, platform: String) throws -> JobView {
        guard let wanted = try? Platform(parsing: platform).normalized() else {
            throw APIError.badRequest("\"\(platform)\" is not a platform like linux/amd64", field: "platform")
        }
        if let exact = build.jobs.first(where: { $0.platform.normalized() == wanted }) { return exact }
        let sameBase = build.jobs.filter { $0.platform.key == wanted.key }
        if wanted.osVersion == nil, sameBase.count == 1 { return sameBase[0] }
        throw APIError(
            .notFound, code: "NOT_FOUND",
            "build \(build.id) has no platform \(platform); its platforms are "
                + build.jobs.map(\.platform.description).joined(separator: ", "))
    }

    func logPage(_ build: BuildView, request: Request, context: CoordinatorContext) async throws -> DashboardPage.Log {
        let query = request.uri.queryParameters
        guard let platformText = query.get("platform") else {
            throw APIError.badRequest("give the platform of the log, ?platform=os/arch", field: "platform")
        }
        let job = try Self.job(of: build, platform: platformText)
        let platform = job.platform.description
        let attempt = try Self.number(query.get("attempt"), name: "attempt", as: Int.self, minimum: 1) ?? job.attempts
        guard attempt <= max(job.attempts, 1) else {
            throw APIError(.notFound, code: "NOT_FOUND", "\(platform) has had \(job.attempts) attempts, not \(attempt)")
        }
        let before = try Self.number(query.get("before"), name: "before", as: Int64.self, minimum: 0)
        let link = { (items: [(String, String?)]) in "/builds/\(build.id)/logs" + Self.query([("platform", platform)] + items) }
        let attempts =
            job.attempts == 0
            ? []
            : (1...job.attempts).map { number in
                DashboardPage.Attempt(number: number, link: link([("attempt", "\(number)")]), current: number == attempt)
            }
        var page = DashboardPage.Log(
            base: basePage(context), id: build.id, shortId: Self.shortId(build.id), platform: platform, attempt: max(attempt, 1),
            hasAttempts: job.attempts > 1, attempts: attempts, windowText: "", earlierLink: nil, latestLink: nil,
            rawLink: "/builds/\(build.id)/logs/raw" + Self.query([("platform", platform), ("attempt", "\(max(attempt, 1))")]),
            statusText: "", followURL: nil, segments: [])
        guard attempt > 0 else {
            page.windowText = "No attempt has started yet."
            page.statusText = "This page shows the first attempt's log once it starts."
            page.followURL = "/live/builds/\(build.id)/log" + Self.query([("platform", platform), ("offset", "0")])
            return page
        }
        let head = try await store.readLog(buildId: build.id, platform: platform, attempt: attempt, offset: .max, limit: 0)
        let end = min(before ?? head.size, head.size)
        var start = max(0, end - Self.logWindow)
        var data = Data()
        if end > start {
            let chunk = try await store.readLog(
                buildId: build.id, platform: platform, attempt: attempt, offset: start, limit: Int(end - start))
            data = chunk.data
            if data.isEmpty, let removed = try await store.logRemoval(epoch: chunk.epoch) {
                page.windowText = "This log (\(head.size) bytes) was removed by retention on \(DashboardFormat.time(removed))."
                return page
            }
            // Start at a whole UTF-8 character.
            let skip = data.prefix(3).prefix { $0 & 0xC0 == 0x80 }.count
            data = data.dropFirst(skip)
            start += Int64(skip)
        }
        page.segments = DashboardFormat.logSegments(data)
        page.windowText =
            head.size == 0
            ? "The log is empty so far."
            : (start == 0 && end == head.size
                ? "All \(Self.bytes(head.size)) shown."
                : "Bytes \(start)–\(end) of \(Self.bytes(head.size)) shown.")
        if start > 0 { page.earlierLink = link([("attempt", "\(attempt)"), ("before", "\(start)")]) }
        if end < head.size { page.latestLink = link([("attempt", "\(attempt)")]) }
        if end == head.size, !head.finished {
            page.followURL =
                "/live/builds/\(build.id)/log"
                + Self.query([("platform", platform), ("attempt", "\(attempt)"), ("offset", "\(end)")])
            page.statusText = "The attempt is running; reload for more (or enable JavaScript to follow it live)."
        } else if head.finished {
            page.statusText = "The attempt has finished."
        }
        return page
    }

    static func bytes(_ count: Int64) -> String {
        if count < 1024 { return "\(count) bytes" }
        if count < 1 << 20 { return String(format: "%.1f KiB", Double(count) / 1024) }
        return String(format: "%.1f MiB", Double(count) / 1_048_576)
    }

    /// The attempt's whole log as stored (secrets already masked by the agent), as a download, read a MiB at a time.
    func rawLog(_ build: BuildView, request: Request) async throws -> Response {
        let query = request.uri.queryParameters
        guard let platformText = query.get("platform") else {
            throw APIError.badRequest("give the platform of the log, ?platform=os/arch", field: "platform")
        }
        let job = try Self.job(of: build, platform: platformText)
        let platform = job.platform.description
        let attempt = try Self.number(query.get("attempt"), name: "attempt", as: Int.self, minimum: 1) ?? max(job.attempts, 1)
        let head = try await store.readLog(buildId: build.id, platform: platform, attempt: attempt, offset: .max, limit: 0)
        let store = self.store
        let buildId = build.id
        let name = "\(build.id)-\(Self.elementKey(platform))-attempt\(attempt).log"
        return Response(
            status: .ok,
            headers: [
                .contentType: "text/plain; charset=utf-8", .contentDisposition: "attachment; filename=\"\(name)\"",
                .contentLength: "\(head.size)",
            ],
            body: ResponseBody { writer in
                var offset: Int64 = 0
                while offset < head.size {
                    let chunk = try await store.readLog(
                        buildId: buildId, platform: platform, attempt: attempt, offset: offset,
                        limit: Int(min(1 << 20, head.size - offset)))
                    if chunk.data.isEmpty { break }
                    try await writer.write(ByteBuffer(bytes: chunk.data))
                    offset += Int64(chunk.data.count)
                }
                try await writer.finish(nil)
            })
    }

    // MARK: - Agents

    func agentsPage(user: TokenGrant, context: CoordinatorContext) async throws -> DashboardPage.Agents {
        let agents = try await store.listAgents()
        var rows: [DashboardPage.AgentRow] = []
        for agent in agents {
            // `currentJob` is BUILD/PLATFORM: shown, and linked, only when the user may see that build.
            var buildLink: String? = nil
            var current = ""
            if let job = agent.currentJob {
                let buildId = String(job.prefix { $0 != "/" })
                if let build = try? await store.build(id: buildId), user.covers(image: build.image) {
                    buildLink = "/builds/\(buildId)"
                    current = "\(build.image) \(job.dropFirst(buildId.count + 1))"
                } else {
                    current = "a build outside your scopes"
                }
            }
            var actions: [DashboardPage.AgentAction] = []
            switch agent.state {
            case .active:
                actions = [.init(target: "draining", actionLabel: "Drain"), .init(target: "disabled", actionLabel: "Disable")]
            case .draining:
                actions = [.init(target: "active", actionLabel: "Activate"), .init(target: "disabled", actionLabel: "Disable")]
            case .disabled: actions = [.init(target: "active", actionLabel: "Activate")]
            case .left: actions = []
            }
            rows.append(
                DashboardPage.AgentRow(
                    agentKey: Self.elementKey(agent.id), agentPath: agent.id, name: agent.name, pool: agent.pool ?? "",
                    labels: agent.labels.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: ", "),
                    platforms: agent.platforms.map(\.description), builders: agent.builders.joined(separator: ", "),
                    version: agent.version ?? "", agentState: agent.state.rawValue,
                    agentStateClass: DashboardFormat.style(agent.state), currentJob: current,
                    currentBuildLink: buildLink, lastSeen: DashboardFormat.time(agent.lastSeenAt),
                    lastSeenISO: agent.lastSeenAt.map { DashboardFormat.iso($0) }, actions: actions))
        }
        return DashboardPage.Agents(base: basePage(context), isAdmin: user.role == .admin, agents: rows)
    }
}
