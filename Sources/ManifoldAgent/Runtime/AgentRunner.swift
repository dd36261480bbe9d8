import Foundation
import Logging
import ManifoldAPI
import ManifoldClient
import ManifoldHTTP

/// The agent's main loop: deliver pending reports, long-poll for work, run each job, report it; drain on the
/// first shutdown signal, cancel on the second.
public struct AgentRunner: Sendable {
    public var settings: AgentSettings
    public var logger: Logger
    public let shutdown: ShutdownState

    public init(settings: AgentSettings, logger: Logger, shutdown: ShutdownState = ShutdownState()) {
        self.settings = settings
        self.logger = logger
        self.shutdown = shutdown
    }

    static func credentialRefused(_ error: CoordinatorClientError) -> AgentError {
        AgentError(
            "the coordinator refused this agent's credential (\(error)); the agent was probably removed or its "
                + "credential revoked. Ask an admin for a join token and run `manifold-agent join` again.")
    }

    static func client(_ credential: AgentCredential, state: StateDirectory, logger: Logger) -> CoordinatorClient {
        CoordinatorClient(
            baseURLs: credential.coordinatorURLs, token: credential.secret, tls: TLSConfiguration(caFile: state.caFile.path),
            userAgent: "manifold-agent/\(AgentVersion.current)", logger: logger)
    }

    /// Runs until shut down; throws when the agent cannot go on (bad settings, refused credential).
    public func run() async throws {
        let state = StateDirectory(path: settings.stateDirectory)
        try state.prepare()
        let credential = try state.loadCredential()
        let client = Self.client(credential, state: state, logger: logger)
        let builder = try Builders.make(settings)
        let platforms = try HostDescription.platforms(from: settings.platforms)
        let builders = await HostDescription.detectBuilders()
        let workRoot = settings.workDirectory.map { URL(fileURLWithPath: $0, isDirectory: true) } ?? state.defaultWorkDirectory
        try FileManager.default.createDirectory(at: workRoot, withIntermediateDirectories: true)
        // Builds a crashed run left behind are killed; their jobs were reported or have lost their lease.
        for leftover in ProcessTracker(state: state).killLeftovers() {
            switch leftover {
            case .killed(let group):
                logger.warning("killed build process group \(group), left by a previous run")
            case .spared(let group, let reason):
                logger.notice("not killing process group \(group) recorded by a previous run: \(reason)")
            }
        }
        // Work directories left by a crash are stale: their jobs were reported or have lost their lease.
        for leftover in (try? FileManager.default.contentsOfDirectory(atPath: workRoot.path)) ?? [] {
            try? FileManager.default.removeItem(at: workRoot.appendingPathComponent(leftover))
        }
        let reports = ReportStore(state: state)
        logger.info(
            "agent \(credential.name) (\(credential.agentId)) polling \(URLRedaction.display(credential.coordinatorURL)) for \(platforms.map(\.description).joined(separator: ", ")) with builder \(settings.builder)"
        )
        let shutdown = self.shutdown
        let drainTimeout = Duration.seconds(settings.drainTimeoutSeconds)
        let drainWatch = Task {
            await shutdown.wait(for: .draining)
            try? await Task.sleep(for: drainTimeout)
            if !Task.isCancelled { shutdown.raise(to: .cancelling) }
        }
        defer { drainWatch.cancel() }

        for report in reports.pending() {
            logger.info("delivering the saved report for job \(report.jobId)")
            let delivery = await reports.deliver(report, client: client, logger: logger) { shutdown.stage == .cancelling }
            if case .credentialRefused(let error) = delivery { throw Self.credentialRefused(error) }
        }

        let runner = JobRunner(
            client: client, settings: settings, credential: credential, builder: builder, workRoot: workRoot,
            shutdown: shutdown, reports: reports, logger: logger)
        let request = PollRequest(
            platforms: platforms, labels: settings.labels, builders: builders, version: AgentVersion.current)
        var backoff = Backoff()
        var lastNotice: String?
        while shutdown.stage == .running {
            let answer: PollResponse?
            let receivedAt: ContinuousClock.Instant
            do {
                answer = try await pollUnlessDraining(client, request)
                receivedAt = .now
                backoff.reset()
            } catch let error as CoordinatorClientError where error.status == 401 {
                throw Self.credentialRefused(error)
            } catch let error as CoordinatorClientError where error.status == 403 {
                // Refused but still known (e.g. disabled by an admin): wait for it to be lifted.
                let delay = backoff.next()
                logger.error("the coordinator refuses work to this agent (\(error)); asking again in \(delay)")
                try? await Task.sleep(for: delay)
                continue
            } catch {
                let delay = backoff.next()
                logger.warning("cannot reach the coordinator (\(error)); retrying in \(delay)")
                try? await Task.sleep(for: delay)
                continue
            }
            guard let answer else { break }
            if answer.notice != lastNotice {
                if let notice = answer.notice { logger.notice("coordinator: \(notice)") }
                lastNotice = answer.notice
            }
            guard let lease = answer.lease else {
                if answer.notice != nil { try? await Task.sleep(for: .seconds(5)) }
                continue
            }
            _ = await runner.run(lease, grantedAt: receivedAt)
        }
        logger.info("shutting down: no job is running")
    }

    /// Polls, but gives up the held poll as soon as shutdown starts (nil then).
    private func pollUnlessDraining(_ client: CoordinatorClient, _ request: PollRequest) async throws -> PollResponse? {
        let shutdown = self.shutdown
        return try await withThrowingTaskGroup(of: PollResponse?.self) { group in
            group.addTask { try await client.poll(request) }
            group.addTask {
                await shutdown.wait(for: .draining)
                return nil
            }
            defer { group.cancelAll() }
            let first = try await group.next() ?? nil
            if first == nil && shutdown.stage == .running { return PollResponse(lease: nil) }
            return first
        }
    }
}
