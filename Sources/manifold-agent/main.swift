import ManifoldAgent

await AgentCommand.runMain()
