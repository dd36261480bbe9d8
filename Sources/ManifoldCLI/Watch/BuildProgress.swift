import Foundation
import ManifoldAPI
import ManifoldCore

/// What `build watch` knows about a build: the coordinator's latest view, the agents (to say what a waiting
/// platform needs), and the latest log line of each platform from the event stream.
struct BuildProgress: Sendable {
    var build: BuildView
    /// nil when the agents could not be read (the hint is left out).
    var agents: [AgentView]?
    /// The newest log line per job id, from `job.log` events (fresher than the view).
    var logLines: [String: String] = [:]
    var lastEventId: Int64 = 0

    init(build: BuildView, agents: [AgentView]? = nil) {
        self.build = build
        self.agents = agents
    }

    mutating func apply(_ event: BuildEvent) {
        lastEventId = max(lastEventId, event.id)
        if event.type == "job.log", let jobId = event.jobId, let line = event.data["line"] { logLines[jobId] = line }
        if event.type == "job.assigned", let jobId = event.jobId {
            logLines[jobId] = nil
            // A new attempt left the queue: no longer waiting for a host, also where the view is not read again (plain
            // mode). An older attempt's assignment, replayed from the start of the stream, is history the view knows.
            if let index = build.jobs.firstIndex(where: { $0.id == jobId }), build.jobs[index].state == .queued,
                let attempt = event.data["attempt"].flatMap(Int.init), attempt > build.jobs[index].attempts
            {
                build.jobs[index].state = .assigned
                build.jobs[index].attempts = attempt
            }
        }
    }

    /// The state column: queued, waiting for agent, retrying, assigned, building, pushing, verifying, done, failed,
    /// cancelled.
    func state(of job: JobView, now: Date) -> String {
        switch job.state {
        case .queued:
            if job.attempts > 0, let notBefore = job.notBefore, notBefore > now { return "retrying" }
            if waitingHint(for: job) != nil { return "waiting for agent" }
            return "queued"
        case .assigned:
            switch job.phase {
            case "building": return "building"
            case "pushing": return "pushing"
            default: return "assigned"
            }
        case .verifying: return "verifying"
        case .succeeded: return "done"
        case .failed: return "failed"
        case .cancelled: return "cancelled"
        }
    }

    /// For a queued job no usable agent can take: which kind of host it waits for, e.g.
    /// `waiting for a windows/amd64:10.0.20348 host: no agent offers it (agents offer linux/amd64, linux/arm64)`.
    func waitingHint(for job: JobView) -> String? {
        guard job.state == .queued, let agents else { return nil }
        let required = job.agentLabels ?? [:]
        let offeringPlatform = agents.filter { agent in
            agent.state != .left && agent.platforms.contains { job.platform.isSatisfied(by: $0) }
        }
        let offering = offeringPlatform.filter { agent in required.allSatisfy { agent.labels[$0.key] == $0.value } }
        if offering.contains(where: { $0.state == .active }) { return nil }
        let wanted = job.platform.description
        if offering.isEmpty, !offeringPlatform.isEmpty {
            let labels = required.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: ",")
            let names = offeringPlatform.map(\.name).joined(separator: ", ")
            return "waiting for a \(wanted) host labelled \(labels): the agents offering \(wanted) (\(names)) lack the label"
        }
        if !offering.isEmpty {
            let names = offering.map { "\($0.name) is \($0.state.rawValue)" }.joined(separator: ", ")
            return "waiting for a \(wanted) host: the agents offering it take no jobs (\(names))"
        }
        let offered = Set(agents.filter { $0.state == .active }.flatMap(\.platforms).map(\.description)).sorted()
        if offered.isEmpty { return "waiting for a \(wanted) host: no agent is taking jobs" }
        return "waiting for a \(wanted) host: no agent offers it (agents offer \(offered.joined(separator: ", ")))"
    }

    /// The newest log line of a job.
    func logLine(of job: JobView) -> String? { logLines[job.id] ?? job.lastLogLine }

    /// How long the job has been in its current attempt, or took.
    func elapsed(of job: JobView, now: Date) -> TimeInterval? {
        switch job.state {
        case .queued: return now.timeIntervalSince(job.notBefore ?? build.createdAt)
        case .assigned, .verifying: return job.startedAt.map { now.timeIntervalSince($0) }
        case .succeeded, .failed, .cancelled:
            guard let start = job.startedAt else { return nil }
            return (job.finishedAt ?? now).timeIntervalSince(start)
        }
    }

    /// The footer: waiting for N of M platforms, publishing, published sha256:… to tags, failed: reason.
    func footer() -> String {
        let jobs = build.jobs
        let done = jobs.filter { $0.state == .succeeded }.count
        let tags = build.tags.joined(separator: ", ")
        switch build.state {
        case .queued, .running:
            return "list: waiting for \(jobs.count - done) of \(jobs.count) platforms"
        case .publishing:
            return "list: publishing to \(tags)"
        case .published:
            return "list: published \(build.listDigest?.description ?? "") to \(tags)"
        case .partiallyPublished:
            return
                "list: partially published \(build.listDigest?.description ?? "") (\(done) of \(jobs.count) platforms) to \(tags)"
        case .failed:
            return "build failed" + (build.reason.map { ": \($0)" } ?? "")
        case .cancelled:
            return "build cancelled" + (build.reason.map { " (\($0))" } ?? "")
        }
    }
}
