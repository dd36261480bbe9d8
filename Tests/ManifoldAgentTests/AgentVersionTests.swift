import ManifoldAgent
import Testing

@Test func versionIsSemantic() {
    #expect(AgentVersion.current.split(separator: ".").count == 3)
}
