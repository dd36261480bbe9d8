import Foundation
import ManifoldCore

/// A build's lifecycle.
public enum BuildState: String, Sendable, Codable, CaseIterable {
    /// Waiting for agents.
    case queued
    /// At least one platform is assigned or done.
    case running
    /// Every platform is verified; the list is being pushed.
    case publishing
    /// The list is in the registry under every tag.
    case published
    /// Only the platforms that succeeded were published (the build allowed it).
    case partiallyPublished = "partially-published"
    case failed
    case cancelled

    public var isFinal: Bool { [.published, .partiallyPublished, .failed, .cancelled].contains(self) }
}

/// One platform's job.
public enum JobState: String, Sendable, Codable, CaseIterable {
    case queued
    /// Leased to an agent, which is building.
    case assigned
    /// The agent reported a digest; the coordinator is checking it in the registry.
    case verifying
    case succeeded
    case failed
    case cancelled

    public var isFinal: Bool { [.succeeded, .failed, .cancelled].contains(self) }
}

/// A platform of a build, as users see it.
public struct JobView: Sendable, Hashable, Codable {
    public var id: String
    public var platform: Platform
    public var state: JobState
    /// Attempts made so far (the current one included).
    public var attempts: Int
    public var maxAttempts: Int
    public var agent: String?
    /// What the agent says it is doing: fetching, building, pushing.
    public var phase: String?
    public var digest: Digest?
    /// The per-platform image, `registry/repository:tag@digest`.
    public var imageReference: String?
    public var reason: String?
    public var lastLogLine: String?
    public var startedAt: Date?
    public var finishedAt: Date?
    public var notBefore: Date?
    /// Labels an agent must have to take this job (besides offering the platform).
    public var agentLabels: [String: String]?

    public init(
        id: String, platform: Platform, state: JobState, attempts: Int, maxAttempts: Int, agent: String? = nil,
        phase: String? = nil, digest: Digest? = nil, imageReference: String? = nil, reason: String? = nil,
        lastLogLine: String? = nil, startedAt: Date? = nil, finishedAt: Date? = nil, notBefore: Date? = nil,
        agentLabels: [String: String]? = nil
    ) {
        self.id = id
        self.platform = platform
        self.state = state
        self.attempts = attempts
        self.maxAttempts = maxAttempts
        self.agent = agent
        self.phase = phase
        self.digest = digest
        self.imageReference = imageReference
        self.reason = reason
        self.lastLogLine = lastLogLine
        self.startedAt = startedAt
        self.finishedAt = finishedAt
        self.notBefore = notBefore
        self.agentLabels = agentLabels
    }
}

/// A build, as users see it.
public struct BuildView: Sendable, Hashable, Codable {
    public var id: String
    public var state: BuildState
    public var image: String
    public var tags: [String]
    public var jobs: [JobView]
    public var listDigest: Digest?
    public var listMediaType: String?
    public var reason: String?
    public var submittedBy: String?
    public var createdAt: Date
    public var updatedAt: Date
    public var finishedAt: Date?
    public var allowPartial: Bool
    /// Something the user must know that the state alone does not say, e.g. a list push that was already under
    /// way when the build was cancelled and landed afterwards.
    public var notice: String?
    /// When retention removed the build's logs and events (`retention_days` after it finished); its result stays.
    public var logsRemovedAt: Date?

    public init(
        id: String, state: BuildState, image: String, tags: [String], jobs: [JobView], listDigest: Digest?,
        listMediaType: String?,
        reason: String?, submittedBy: String?, createdAt: Date, updatedAt: Date, finishedAt: Date?, allowPartial: Bool,
        notice: String? = nil, logsRemovedAt: Date? = nil
    ) {
        self.notice = notice
        self.id = id
        self.state = state
        self.image = image
        self.tags = tags
        self.jobs = jobs
        self.listDigest = listDigest
        self.listMediaType = listMediaType
        self.reason = reason
        self.submittedBy = submittedBy
        self.createdAt = createdAt
        self.updatedAt = updatedAt
        self.finishedAt = finishedAt
        self.allowPartial = allowPartial
        self.logsRemovedAt = logsRemovedAt
    }
}

/// One entry of a build's append-only event log; `id` is the SSE event id (`Last-Event-ID`).
public struct BuildEvent: Sendable, Hashable, Codable {
    public var id: Int64
    public var buildId: String
    public var jobId: String?
    public var platform: String?
    /// e.g. `build.submitted`, `job.assigned`, `job.phase`, `job.log`, `job.verifying`, `job.succeeded`, `job.retrying`,
    /// `job.failed`, `job.lost`, `list.publishing`, `list.published`, `build.failed`, `build.cancelled`.
    public var type: String
    public var data: [String: String]
    public var time: Date

    public init(id: Int64, buildId: String, jobId: String?, platform: String?, type: String, data: [String: String], time: Date) {
        self.id = id
        self.buildId = buildId
        self.jobId = jobId
        self.platform = platform
        self.type = type
        self.data = data
        self.time = time
    }
}

/// Agent states an admin can set.
public enum AgentState: String, Sendable, Codable, CaseIterable {
    case active
    /// Finishes its current job, takes no new ones.
    case draining
    /// Takes no jobs.
    case disabled
    /// Left the pool (`leave`).
    case left
}

public struct AgentView: Sendable, Hashable, Codable {
    public var id: String
    public var name: String
    public var platforms: [Platform]
    public var labels: [String: String]
    public var builders: [String]
    public var version: String?
    public var state: AgentState
    public var currentJob: String?
    public var joinedAt: Date
    public var lastSeenAt: Date?
    /// The pool it joined; its labels and platforms were fixed then, and polls may only narrow them.
    public var pool: String?

    public init(
        id: String, name: String, platforms: [Platform], labels: [String: String], builders: [String], version: String?,
        state: AgentState, currentJob: String?, joinedAt: Date, lastSeenAt: Date?, pool: String? = nil
    ) {
        self.pool = pool
        self.id = id
        self.name = name
        self.platforms = platforms
        self.labels = labels
        self.builders = builders
        self.version = version
        self.state = state
        self.currentJob = currentJob
        self.joinedAt = joinedAt
        self.lastSeenAt = lastSeenAt
    }
}

/// Who a token lets in.
public enum Role: String, Sendable, Codable, CaseIterable {
    /// Everything, including tokens and agents.
    case admin
    /// Submit, cancel and retry builds within its repository scopes; read the builds its scopes cover.
    case submitter
    /// Read the builds (logs, events) its repository scopes cover, and the agents.
    case viewer
    /// Only join agents.
    case join
}

public struct TokenView: Sendable, Hashable, Codable {
    public var id: String
    public var name: String
    public var role: Role
    public var createdAt: Date
    public var lastUsedAt: Date?
    public var revokedAt: Date?
    /// When it stops working; nil: never.
    public var expiresAt: Date?
    /// A join token's pool.
    public var pool: String?
    /// How many more agents a join token may join; nil: no limit (tokens from before pools existed).
    public var usesLeft: Int?
    /// The repository patterns a submitter or viewer token is limited to; nil: every repository of
    /// `allowed_registries`.
    public var repositories: [String]?

    public init(
        id: String, name: String, role: Role, createdAt: Date, lastUsedAt: Date?, revokedAt: Date?, expiresAt: Date? = nil,
        pool: String? = nil, usesLeft: Int? = nil, repositories: [String]? = nil
    ) {
        self.expiresAt = expiresAt
        self.pool = pool
        self.usesLeft = usesLeft
        self.repositories = repositories
        self.id = id
        self.name = name
        self.role = role
        self.createdAt = createdAt
        self.lastUsedAt = lastUsedAt
        self.revokedAt = revokedAt
    }
}

/// A pool of agents: the labels imposed on them and the platforms they may offer.
public struct PoolView: Sendable, Hashable, Codable {
    public var name: String
    public var labels: [String: String]
    /// Empty: every platform.
    public var platforms: [Platform]
    /// Agents in the pool that have not left.
    public var agents: Int
    /// Join tokens of the pool that still work (not revoked, expired or used up).
    public var liveJoinTokens: Int
    public var createdAt: Date

    public init(
        name: String, labels: [String: String], platforms: [Platform], agents: Int, liveJoinTokens: Int, createdAt: Date
    ) {
        self.name = name
        self.labels = labels
        self.platforms = platforms
        self.agents = agents
        self.liveJoinTokens = liveJoinTokens
        self.createdAt = createdAt
    }
}

/// The body of every error answer: `{"error": {"code": "...", "message": "...", "field": "..."}}`.
public struct ErrorResponse: Sendable, Hashable, Codable {
    public struct Detail: Sendable, Hashable, Codable {
        public var code: String
        public var message: String
        public var field: String?
        public init(code: String, message: String, field: String? = nil) {
            self.code = code
            self.message = message
            self.field = field
        }
    }
    public var error: Detail
    public init(code: String, message: String, field: String? = nil) {
        error = Detail(code: code, message: message, field: field)
    }
}
