import ManifoldAgent

print("manifold-agent \(AgentVersion.current)")
