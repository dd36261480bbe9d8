#if !os(Windows)
/// On Linux and macOS the service manager (systemd, launchd) sends SIGTERM, which ``SignalWatcher`` handles;
/// there is no service protocol to speak.
enum ServiceHost {
    static func run(shutdown: ShutdownState, _ work: @escaping @Sendable () async throws -> Void) async throws {
        throw AgentError(
            "--service is for the Windows Service Control Manager; under systemd run `manifold-agent run` directly "
                + "(see agent/manifold-agent.service)")
    }
}
#endif
