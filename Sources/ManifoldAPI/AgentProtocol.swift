import Foundation
import ManifoldCore

/// The version of the agent protocol; the coordinator refuses agents older than ``minimumVersion``.
public enum AgentProtocol {
    /// 2: agents push to a per-attempt tag, give jobs back with `released`, and treat 401 as a lost lease.
    /// 3: a job carries ``JobSpec/secrets``, which the agent hands to the builder as build secrets (never as build
    /// args). A protocol 2 agent is never given a job that has secrets.
    public static let version = 3
    /// The oldest protocol the coordinator still serves.
    public static let minimumVersion = 2
    /// The oldest protocol whose agents may receive jobs with secrets.
    public static let secretsVersion = 3
}

public struct JoinRequest: Sendable, Hashable, Codable {
    public var name: String
    public var platforms: [Platform]
    public var labels: [String: String]
    public var builders: [String]
    public var version: String
    public var protocolVersion: Int

    public init(
        name: String, platforms: [Platform], labels: [String: String], builders: [String], version: String,
        protocolVersion: Int = AgentProtocol.version
    ) {
        self.name = name
        self.platforms = platforms
        self.labels = labels
        self.builders = builders
        self.version = version
        self.protocolVersion = protocolVersion
    }
}

public struct JoinResponse: Sendable, Hashable, Codable {
    public var agentId: String
    /// Shown once; the coordinator keeps only its hash.
    public var secret: String
    public var leaseTTLSeconds: Int
    public var heartbeatIntervalSeconds: Int
    /// The pool joined, and the labels and platforms fixed for the agent (polls may narrow them, never widen).
    public var pool: String?
    public var labels: [String: String]?
    public var platforms: [Platform]?

    public init(
        agentId: String, secret: String, leaseTTLSeconds: Int, heartbeatIntervalSeconds: Int, pool: String? = nil,
        labels: [String: String]? = nil, platforms: [Platform]? = nil
    ) {
        self.pool = pool
        self.labels = labels
        self.platforms = platforms
        self.agentId = agentId
        self.secret = secret
        self.leaseTTLSeconds = leaseTTLSeconds
        self.heartbeatIntervalSeconds = heartbeatIntervalSeconds
    }
}

/// Sent with every poll, so the coordinator always knows what the host offers now.
public struct PollRequest: Sendable, Hashable, Codable {
    public var platforms: [Platform]
    public var labels: [String: String]
    public var builders: [String]
    public var version: String
    public var protocolVersion: Int

    public init(
        platforms: [Platform], labels: [String: String], builders: [String], version: String,
        protocolVersion: Int = AgentProtocol.version
    ) {
        self.platforms = platforms
        self.labels = labels
        self.builders = builders
        self.version = version
        self.protocolVersion = protocolVersion
    }
}

/// Everything an agent needs to run one job.
public struct JobSpec: Sendable, Hashable, Codable {
    public var buildId: String
    public var platform: Platform
    /// `registry/repository` to push to.
    public var image: String
    /// The tag to push to, owned by this attempt alone: `{child tag}-attempt-{epoch}` (e.g.
    /// `1.0-linux-arm64-attempt-42`). Only the coordinator writes the stable per-platform tag (`1.0-linux-arm64`),
    /// after it verified the image, so an agent cut off from the coordinator can never move what users pull.
    public var tag: String
    public var context: ContextSource
    public var dockerfile: String
    public var buildArgs: [String: String]
    /// Protocol 3: the build secrets, `NAME: value`, for `--secret id=NAME,…` (or the command builder's
    /// `MANIFOLD_SECRETS_DIR`). Decrypted by the coordinator only to hand out this lease.
    public var secrets: [String: String]
    /// Protocol 2: names of `buildArgs` that are secret. A protocol 3 coordinator sends none (its secrets are in
    /// ``secrets``); an agent treats any it gets as secrets too (see ``buildSecrets``).
    public var secretBuildArgs: [String]
    public var labels: [String: String]
    public var timeoutSeconds: Int

    public init(
        buildId: String, platform: Platform, image: String, tag: String, context: ContextSource, dockerfile: String,
        buildArgs: [String: String], secrets: [String: String] = [:], secretBuildArgs: [String] = [],
        labels: [String: String], timeoutSeconds: Int
    ) {
        self.buildId = buildId
        self.platform = platform
        self.image = image
        self.tag = tag
        self.context = context
        self.dockerfile = dockerfile
        self.buildArgs = buildArgs
        self.secrets = secrets
        self.secretBuildArgs = secretBuildArgs
        self.labels = labels
        self.timeoutSeconds = timeoutSeconds
    }

    enum CodingKeys: String, CodingKey {
        case buildId, platform, image, tag, context, dockerfile, buildArgs, secrets, secretBuildArgs, labels, timeoutSeconds
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        buildId = try c.decode(String.self, forKey: .buildId)
        platform = try c.decode(Platform.self, forKey: .platform)
        image = try c.decode(String.self, forKey: .image)
        tag = try c.decode(String.self, forKey: .tag)
        context = try c.decode(ContextSource.self, forKey: .context)
        dockerfile = try c.decode(String.self, forKey: .dockerfile)
        buildArgs = try c.decode([String: String].self, forKey: .buildArgs)
        secrets = try c.decodeIfPresent([String: String].self, forKey: .secrets) ?? [:]
        secretBuildArgs = try c.decodeIfPresent([String].self, forKey: .secretBuildArgs) ?? []
        labels = try c.decode([String: String].self, forKey: .labels)
        timeoutSeconds = try c.decode(Int.self, forKey: .timeoutSeconds)
    }
}

/// A job handed to an agent. Every later call about it carries `jobId` and `epoch`; a call with a
/// superseded epoch is refused with 409 and changes nothing.
public struct Lease: Sendable, Hashable, Codable {
    public var jobId: String
    public var epoch: Int64
    public var attempt: Int
    public var leaseExpiresAt: Date
    public var spec: JobSpec
    /// The W3C trace context of this attempt's span when the coordinator traces builds
    /// (`00-TRACEID-SPANID-FLAGS`); the agent sends it back with its report and its ``JobPhase`` timings, which
    /// the coordinator records as spans under it. Absent when tracing is off.
    public var traceparent: String?

    public init(
        jobId: String, epoch: Int64, attempt: Int, leaseExpiresAt: Date, spec: JobSpec, traceparent: String? = nil
    ) {
        self.jobId = jobId
        self.epoch = epoch
        self.attempt = attempt
        self.leaseExpiresAt = leaseExpiresAt
        self.spec = spec
        self.traceparent = traceparent
    }
}

public struct PollResponse: Sendable, Hashable, Codable {
    /// nil when the poll timed out with no work.
    public var lease: Lease?
    /// Why no work can come to this agent now (e.g. an admin disabled or drained it); agents log it.
    public var notice: String?
    public init(lease: Lease?, notice: String? = nil) {
        self.lease = lease
        self.notice = notice
    }
}

public struct HeartbeatRequest: Sendable, Hashable, Codable {
    public var jobId: String
    public var epoch: Int64
    /// What the agent is doing now: fetching, building, pushing.
    public var phase: String?
    public init(jobId: String, epoch: Int64, phase: String? = nil) {
        self.jobId = jobId
        self.epoch = epoch
        self.phase = phase
    }
}

public struct HeartbeatResponse: Sendable, Hashable, Codable {
    /// The job was cancelled: stop the build and report `cancelled`.
    public var cancelled: Bool
    public var leaseExpiresAt: Date
    public init(cancelled: Bool, leaseExpiresAt: Date) {
        self.cancelled = cancelled
        self.leaseExpiresAt = leaseExpiresAt
    }
}

/// The answer to a log append: the log's size on the coordinator. When it is less than the offset the agent
/// sent, the agent resends from there.
public struct LogAppendResponse: Sendable, Hashable, Codable {
    public var size: Int64
    public init(size: Int64) { self.size = size }
}

public struct CompleteRequest: Sendable, Hashable, Codable {
    /// `released`: the agent gives the job back without a verdict (it is shutting down or draining); the
    /// coordinator re-queues it at once and does not count the attempt.
    public enum Outcome: String, Sendable, Codable { case succeeded, failed, cancelled, released }
    public var jobId: String
    public var epoch: Int64
    public var outcome: Outcome
    /// For `succeeded`: the pushed image, `registry/repository:tag`.
    public var imageReference: String?
    public var digest: Digest?
    /// For `failed`.
    public var exitCode: Int?
    public var reason: String?
    /// The lease's ``Lease/traceparent``, sent back so the phases join the attempt's span.
    public var traceparent: String?
    /// When the agent fetched the context, built and pushed (wall-clock times), for the build's trace.
    public var phases: [JobPhase]?

    public init(
        jobId: String, epoch: Int64, outcome: Outcome, imageReference: String? = nil, digest: Digest? = nil,
        exitCode: Int? = nil, reason: String? = nil, traceparent: String? = nil, phases: [JobPhase]? = nil
    ) {
        self.jobId = jobId
        self.epoch = epoch
        self.outcome = outcome
        self.imageReference = imageReference
        self.digest = digest
        self.exitCode = exitCode
        self.reason = reason
        self.traceparent = traceparent
        self.phases = phases
    }
}

/// One phase of an attempt on the agent, timed by the agent's clock.
///
/// The agent has no trace exporter (it builds on Windows, without SwiftNIO, and reaches only its coordinator): it
/// times its phases and the coordinator turns them into spans of the build's trace.
public struct JobPhase: Sendable, Hashable, Codable {
    /// The phases an agent times.
    public static let fetchContext = "fetch_context"
    public static let build = "build"
    public static let push = "push"

    /// ``fetchContext``, ``build`` or ``push``; a builder that builds and pushes in one command reports `build`.
    public var name: String
    public var startedAt: Date
    public var endedAt: Date
    /// Whether the phase ended with an error (the build failed, the context could not be fetched).
    public var failed: Bool?

    /// `startedAt` and `endedAt` are kept to the millisecond, the precision they travel with.
    public init(name: String, startedAt: Date, endedAt: Date, failed: Bool? = nil) {
        self.name = name
        self.startedAt = Self.toMilliseconds(startedAt)
        self.endedAt = Self.toMilliseconds(endedAt)
        self.failed = failed
    }

    enum CodingKeys: String, CodingKey { case name, startedAt, endedAt, failed }

    /// Times are ISO 8601 with milliseconds (`2026-12-03T06:08:26.125Z`): phases often take less than the whole
    /// second the API's other dates are given in. Any fraction is read (and rounded to the millisecond), so a
    /// decoded phase encodes to text that decodes to the same phase.
    static let timeFormat = Date.ISO8601FormatStyle(includingFractionalSeconds: true)
    /// Times an agent may report: after 1970, before the year 5000.
    static let timeRange: ClosedRange<TimeInterval> = 0...95_617_584_000

    static func milliseconds(_ date: Date) -> Int64 {
        Int64((min(max(date.timeIntervalSince1970, timeRange.lowerBound), timeRange.upperBound) * 1000).rounded())
    }

    static func toMilliseconds(_ date: Date) -> Date {
        Date(timeIntervalSince1970: Double(milliseconds(date)) / 1000)
    }

    /// `date` as ISO 8601 with exactly three fractional digits, written from whole milliseconds (a formatter given a
    /// binary fraction just below a millisecond might write the one before).
    static func text(_ date: Date) -> String {
        let milliseconds = Self.milliseconds(date)
        let whole = Date(timeIntervalSince1970: Double(milliseconds / 1000)).formatted(Date.ISO8601FormatStyle())
        let fraction = String(milliseconds % 1000)
        return whole.dropLast() + "." + String(repeating: "0", count: 3 - fraction.count) + fraction + "Z"
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        func time(_ key: CodingKeys) throws -> Date {
            let text = try c.decode(String.self, forKey: key)
            guard let date = (try? Self.timeFormat.parse(text)) ?? (try? Date.ISO8601FormatStyle().parse(text)) else {
                throw DecodingError.dataCorruptedError(
                    forKey: key, in: c, debugDescription: "\"\(text)\" is not an ISO 8601 date and time")
            }
            guard Self.timeRange.contains(date.timeIntervalSince1970) else {
                throw DecodingError.dataCorruptedError(
                    forKey: key, in: c, debugDescription: "\"\(text)\" is not a time between 1970 and the year 5000")
            }
            return Self.toMilliseconds(date)
        }
        name = try c.decode(String.self, forKey: .name)
        startedAt = try time(.startedAt)
        endedAt = try time(.endedAt)
        failed = try c.decodeIfPresent(Bool.self, forKey: .failed)
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(name, forKey: .name)
        try c.encode(Self.text(startedAt), forKey: .startedAt)
        try c.encode(Self.text(endedAt), forKey: .endedAt)
        try c.encodeIfPresent(failed, forKey: .failed)
    }
}

public struct CompleteResponse: Sendable, Hashable, Codable {
    /// The report was recorded (or had been already).
    public var accepted: Bool
    public init(accepted: Bool) { self.accepted = accepted }
}

/// The join token `manifold init` prints joins this many agents for this long unless told otherwise (the CLI's
/// defaults and the coordinator's).
public enum InitialJoinToken {
    public static let uses = 10
    public static let lifetime: TimeInterval = 86_400
}
