import Foundation
import ManifoldAPI
import Testing

@testable import ManifoldAgent

@Suite struct AgentCredentialTests {
    /// Credentials written before replicas existed keep working; new ones list every URL the agent fails over to.
    @Test func aCredentialWithoutAlternateURLsStillLoadsAndNewOnesKeepThem() throws {
        let old = """
            {"coordinatorURL":"https://a.example:7443","agentId":"agt_1","secret":"s","name":"n",\
            "leaseTTLSeconds":60,"heartbeatIntervalSeconds":10,"caFingerprint":"sha256:00"}
            """
        let decoded = try APICoding.decoder().decode(AgentCredential.self, from: Data(old.utf8))
        #expect(decoded.coordinatorURLs.map(\.absoluteString) == ["https://a.example:7443"])
        var replicated = decoded
        replicated.alternateURLs = [URL(string: "https://b.example:7443")!]
        let again = try APICoding.decoder().decode(AgentCredential.self, from: APICoding.encoder().encode(replicated))
        #expect(again.coordinatorURLs.map(\.absoluteString) == ["https://a.example:7443", "https://b.example:7443"])
    }
}
