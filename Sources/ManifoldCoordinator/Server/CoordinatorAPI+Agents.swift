import Foundation
import Hummingbird
import ManifoldAPI
import ManifoldCore
import ManifoldStore
import Tracing

extension CoordinatorAPI {
    func addAgentRoutes(to router: Router<CoordinatorContext>) {
        let agents = router.group("/api/v1/agent")

        agents.post("/join") { request, context -> Response in
            let user = try context.requireUser([.join], to: "join agents")
            let join = try await decode(JoinRequest.self, from: request, context: context)
            try Self.checkProtocol(join.protocolVersion)
            let secret = generateSecret("mfd_agent_")
            // An admin joins agents into the default pool without using up a token.
            let agent = try await store.joinAgent(
                join, secretHash: hash(secret), joinTokenId: user.role == .join ? user.tokenId : nil)
            context.logger.info(
                "agent joined",
                metadata: [
                    "agent": "\(agent.name)", "pool": "\(agent.pool ?? "-")",
                    "platforms": "\(agent.platforms.map(\.description))",
                ])
            return try Self.json(
                JoinResponse(
                    agentId: agent.id, secret: secret, leaseTTLSeconds: options.leaseTTLSeconds,
                    heartbeatIntervalSeconds: options.heartbeatIntervalSeconds, pool: agent.pool, labels: agent.labels,
                    platforms: agent.platforms), status: .created)
        }

        agents.post("/poll") { request, context -> Response in
            let agent = try context.requireAgent()
            // The held poll ends as soon as the agent's connection closes, and a lease is never granted into a closed
            // connection: one granted in that instant is given back at once. The connection stays open for the
            // agent's next request (see ConnectionCloseWatch).
            let poll = try await decode(PollRequest.self, from: request, context: context)
            try Self.checkProtocol(poll.protocolVersion)
            guard !poll.platforms.isEmpty else {
                throw APIError.badRequest("offer at least one platform", field: "platforms")
            }
            let watch = try await context.connectionCloseWatch()
            let api = self
            let (granted, closed) = try await watch.cancellingOnClose {
                try await api.longPoll(agentId: agent.id, poll: poll)
            }
            var lease = granted
            if let lease, closed {
                try await store.releaseUndelivered(agentId: agent.id, epoch: lease.epoch, offeredUntil: lease.leaseExpiresAt)
                notifier.notify([.work, .progress])
                throw CancellationError()
            }
            if let granted = lease {
                lease?.traceparent = await traceDispatch(granted, agent: agent.name)
            }
            var notice: String? = nil
            if lease == nil {
                switch try await store.agent(id: agent.id).state {
                case .draining:
                    notice = "an admin is draining agent \(agent.name): it takes no new jobs (set it active again to resume)"
                case .disabled: notice = "an admin disabled agent \(agent.name): it gets no jobs until it is set active again"
                case .active, .left: break
                }
            }
            return try Self.json(PollResponse(lease: lease, notice: notice))
        }

        agents.post("/heartbeat") { request, context -> Response in
            let agent = try context.requireAgent()
            let heartbeat = try await decode(HeartbeatRequest.self, from: request, context: context)
            let answer = try await store.heartbeat(agentId: agent.id, heartbeat)
            if heartbeat.phase != nil {
                notifier.notify(.progress, build: await jobBuilds.build(of: heartbeat.jobId, in: store))
            }
            return try Self.json(answer)
        }

        agents.put("/jobs/:job/logs") { request, context -> Response in
            let agent = try context.requireAgent()
            let jobId = try Self.parameter("job", context)
            guard let epoch = request.uri.queryParameters.get("epoch", as: Int64.self),
                let offset = request.uri.queryParameters.get("offset", as: Int64.self), offset >= 0
            else { throw APIError.badRequest("give ?epoch=N&offset=BYTES", field: "offset") }
            if let final = request.uri.queryParameters.get("final") {
                guard final == "true" else {
                    throw APIError.badRequest("final=\(final): give final=true or leave it out", field: "final")
                }
                // The agent has sent everything: `offset` is the log's whole size. Followers can end once it is stored.
                switch try await store.closeLog(agentId: agent.id, jobId: jobId, epoch: epoch, size: offset) {
                case .stored(let size), .truncated(let size):
                    notifier.notify(.progress, build: await jobBuilds.build(of: jobId, in: store))
                    return try Self.json(LogAppendResponse(size: size))
                case .gap(let size):
                    return try Self.json(LogAppendResponse(size: size), status: .rangeNotSatisfiable)
                }
            }
            let body: ByteBuffer
            do { body = try await request.body.collect(upTo: 4 << 20) } catch {
                throw APIError(.contentTooLarge, code: "TOO_LARGE", "send log chunks of at most 4 MiB")
            }
            switch try await store.appendLog(
                agentId: agent.id, jobId: jobId, epoch: epoch, offset: offset, data: Data(buffer: body))
            {
            case .stored(let size):
                notifier.notify(.progress, build: await jobBuilds.build(of: jobId, in: store))
                return try Self.json(LogAppendResponse(size: size))
            case .gap(let size):
                // The agent resends from `size`.
                return try Self.json(LogAppendResponse(size: size), status: .rangeNotSatisfiable)
            case .truncated(let size):
                notifier.notify(.progress, build: await jobBuilds.build(of: jobId, in: store))
                throw APIError(
                    .contentTooLarge, code: "TOO_LARGE",
                    "this attempt's log reached the coordinator's limit of \(store.settings.maxLogBytesPerAttempt) bytes "
                        + "(\(size) stored, ending with a marker line); send no more log for it and report the result")
            }
        }

        agents.post("/complete") { request, context -> Response in
            let agent = try context.requireAgent()
            let report = try await decode(CompleteRequest.self, from: request, context: context)
            let received = Date()
            let outcome = try await store.complete(agentId: agent.id, report)
            await traceReport(report, agent: agent.name, received: received, outcome: outcome)
            // Only a job queued again (a retry, a job given back) is new work for held polls: a report that ends its
            // job, or sends it to verification, wakes the verifier and the event streams, not every held poll.
            let requeued = try await store.isQueued(jobId: report.jobId)
            notifier.notify(
                requeued ? [.verification, .work, .progress] : [.verification, .progress],
                build: await jobBuilds.build(of: report.jobId, in: store))
            if case .refused(let reason) = outcome {
                context.logger.warning(
                    "report refused", metadata: ["agent": "\(agent.name)", "job": "\(report.jobId)", "reason": "\(reason)"])
                throw APIError(.unprocessableContent, code: "REPORT_REFUSED", reason, field: "imageReference")
            }
            return try Self.json(CompleteResponse(accepted: true))
        }

        agents.post("/leave") { _, context -> Response in
            let agent = try context.requireAgent()
            try await store.leaveAgent(id: agent.id)
            notifier.notify([.work, .progress])
            return Response(status: .noContent)
        }
    }

    /// Holds the poll until a job this agent can take appears (woken by notification), the poll timeout
    /// passes, or the agent disconnects. Each pass first reads, without the writers' lock, what the poll can take and
    /// whether a lease is worth writing (``Store/checkPoll(agentId:poll:offer:)``); only then does it write. So an agent
    /// that polls again right after its report, with nothing queued for it, costs a read, and work for other platforms
    /// or labels, or a job another poll already took, wakes a held poll for a read, not a write. The poll chosen for a
    /// new job it can take skips the read. New builds wake only as many held polls as they have jobs those polls can
    /// take (``WorkNotifier/notifyWork(_:also:)``).
    func longPoll(agentId: String, poll: PollRequest) async throws -> Lease? {
        let deadline = ContinuousClock.now + options.pollTimeout
        // Read on arrival and held for the rest of the poll; nil until then.
        var offer: WorkNotifier.WorkOffer?
        // A poll woken for a job that ends before it has tried to lease (its agent went away, or the store failed)
        // passes the wake-up on to the others: to every replica when it was the one chosen for a new job (the other
        // replicas were not told of that job), to this one's other polls otherwise.
        var woken = false
        // A poll chosen for a new job its offer can take tries to lease at once; any other pass reads first.
        var chosenForWork = false
        defer {
            if woken {
                if chosenForWork { notifier.notify(.work) } else { notifier.notifyHere(.work) }
            }
        }
        while !Task.isCancelled {
            let generation = notifier.generation(of: .work)
            var check: Store.PollCheck?
            if !chosenForWork {
                check = try await store.checkPoll(
                    agentId: agentId, poll: poll, offer: offer.map { ($0.platforms, $0.labels) })
            }
            let lease = check?.worthLeasing ?? true ? try await store.lease(agentId: agentId, poll: poll) : nil
            woken = false
            if let lease {
                notifier.notify(.progress, build: lease.spec.buildId)
                return lease
            }
            guard ContinuousClock.now < deadline, !Task.isCancelled, !notifier.isShuttingDown else { return nil }
            var wakeAt = deadline
            let nextQueued: Date?
            if let check {
                nextQueued = check.nextQueuedJobTime
                if offer == nil { offer = WorkNotifier.WorkOffer(platforms: check.platforms, labels: check.labels) }
            } else {
                nextQueued = try await store.nextQueuedJobTime()
            }
            if let next = nextQueued {
                let delay = next.timeIntervalSinceNow
                if delay > 0 { wakeAt = min(wakeAt, .now + .milliseconds(Int64(delay * 1000) + 10)) }
            }
            // The first pass always reads, so the offer is known here.
            guard let held = offer else { return nil }
            metrics.heldPolls.increment()
            let wake = await notifier.waitForWork(after: generation, until: wakeAt, offer: held)
            metrics.heldPolls.decrement()
            chosenForWork = wake == .chosenForWork
            woken = true
            metrics.increment("manifold_held_poll_rechecks_total")
        }
        return nil
    }

    /// The `dispatch` span of a granted lease, from when its job became ready to now, under the build's root span;
    /// its context goes to the agent with the lease. Nil when tracing is off or the build has no trace.
    func traceDispatch(_ lease: Lease, agent: String) async -> String? {
        guard tracing.isEnabled,
            let job = try? await store.traceContext(jobId: lease.jobId),
            let parent = tracing.context(traceparent: job.traceparent)
        else { return nil }
        let span = tracing.recordSpan(
            "dispatch", parent: parent, from: job.readySince, to: Date(),
            attributes: [
                "manifold.build": .string(lease.spec.buildId), "manifold.job": .string(lease.jobId),
                "manifold.platform": .string(lease.spec.platform.description), "manifold.attempt": .int64(Int64(lease.attempt)),
                "manifold.epoch": .int64(lease.epoch), "manifold.agent": .string(agent),
            ])
        return tracing.traceparent(of: span)
    }

    /// The agent's phases and the `report` span, under the attempt's `dispatch` span (the lease's trace context the
    /// agent sent back, when it belongs to the job's build; else the build's root span).
    func traceReport(_ report: CompleteRequest, agent: String, received: Date, outcome: CompletionOutcome) async {
        guard tracing.isEnabled, let job = try? await store.traceContext(jobId: report.jobId),
            let root = TraceParent(job.traceparent)
        else { return }
        let sent = report.traceparent.flatMap(TraceParent.init).flatMap { $0.traceID == root.traceID ? $0 : nil }
        guard let parent = tracing.context(traceparent: (sent ?? root).description) else { return }
        // One span per known phase at most: a report may not turn into a flood of spans.
        var recorded = Set<String>()
        for phase in report.phases ?? []
        where [JobPhase.fetchContext, JobPhase.build, JobPhase.push].contains(phase.name) && recorded.insert(phase.name).inserted
        {
            let span = tracing.recordSpan(
                "agent \(phase.name)", parent: parent, from: phase.startedAt, to: phase.endedAt,
                attributes: ["manifold.job": .string(report.jobId), "manifold.agent": .string(agent)])
            if phase.failed == true { span.setStatus(SpanStatus(code: .error)) }
        }
        let span = tracing.recordSpan(
            "report", parent: parent, from: received, to: Date(),
            attributes: [
                "manifold.job": .string(report.jobId), "manifold.agent": .string(agent),
                "manifold.outcome": .string(report.outcome.rawValue),
            ])
        if case .refused(let reason) = outcome { span.setStatus(SpanStatus(code: .error, message: reason)) }
    }

    static func checkProtocol(_ version: Int) throws {
        guard version >= AgentProtocol.minimumVersion else {
            throw APIError(
                .badRequest, code: "PROTOCOL_TOO_OLD",
                "the agent speaks protocol \(version); this coordinator needs \(AgentProtocol.minimumVersion) or later. "
                    + "Upgrade manifold-agent.")
        }
    }
}
