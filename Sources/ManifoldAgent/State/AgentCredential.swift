import Foundation

/// What `join` stores and every later command reads: where the coordinator is and who this agent is.
public struct AgentCredential: Sendable, Hashable, Codable {
    public var coordinatorURL: URL
    /// Further URLs of the same coordinator (replicas reached directly), tried when `coordinatorURL` cannot be.
    public var alternateURLs: [URL]?
    public var agentId: String
    public var secret: String
    public var name: String
    public var leaseTTLSeconds: Int
    public var heartbeatIntervalSeconds: Int
    public var caFingerprint: String
}

extension AgentCredential {
    /// Every URL the agent may reach its coordinator at, the one it joined through first.
    public var coordinatorURLs: [URL] { [coordinatorURL] + (alternateURLs ?? []) }
}
