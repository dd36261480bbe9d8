import Foundation

/// What `join` stores and every later command reads: where the coordinator is and who this agent is.
public struct AgentCredential: Sendable, Hashable, Codable {
    public var coordinatorURL: URL
    public var agentId: String
    public var secret: String
    public var name: String
    public var leaseTTLSeconds: Int
    public var heartbeatIntervalSeconds: Int
    public var caFingerprint: String
}
