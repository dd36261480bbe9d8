import Foundation
import Hummingbird
import HummingbirdCore
import HummingbirdTLS
import Logging
import ManifoldAPI
import ManifoldCore
import ManifoldRegistry
import ManifoldStore
import NIOCore
import NIOSSL
import ServiceLifecycle
import UnixSignals

/// The coordinator process: the HTTPS API plus the services that expire leases, verify reported digests
/// and publish lists, all run by one `ServiceGroup` so SIGTERM stops accepting work, lets in-flight requests
/// finish, and exits with every acknowledged change already on disk.
public struct Coordinator: Sendable {
    public let state: StateDirectory
    public let settings: CoordinatorSettings
    let logger: Logger

    /// The process environment, for `MANIFOLD_DATABASE_PASSWORD`.
    let environment: [String: String]

    public init(
        state: StateDirectory, settings: CoordinatorSettings, logger: Logger,
        environment: [String: String] = ProcessInfo.processInfo.environment
    ) {
        self.state = state
        self.settings = settings
        self.logger = logger
        self.environment = environment
    }

    /// Runs until one of `gracefulShutdownSignals` arrives or the task is cancelled. `onListening` receives the
    /// bound port (useful with port 0).
    public func run(
        gracefulShutdownSignals: [UnixSignal] = [.sigterm, .sigint],
        onListening: @escaping @Sendable (Int) async -> Void = { _ in }
    ) async throws {
        let settings = settings
        let database = try await CoordinatorDatabase.open(
            state: state, settings: settings,
            storeSettings: StoreSettings(
                leaseTTL: TimeInterval(settings.leaseTTLSeconds), defaultMaxAttempts: settings.defaultMaxAttempts,
                retryBackoff: TimeInterval(settings.retryBackoffSeconds),
                maxRetryBackoff: TimeInterval(max(settings.retryBackoffSeconds, settings.maxRetryBackoffSeconds)),
                maxLogBytesPerAttempt: settings.maxLogBytesPerAttempt,
                childTag: { template, tag, platform in
                    Self.childTag(template: template ?? settings.childTagTemplate, tag: tag, platform: platform)
                }, stagingRepositories: settings.stagingRepositories),
            environment: environment, logger: logger)
        do {
            try await serve(database, gracefulShutdownSignals: gracefulShutdownSignals, onListening: onListening)
        } catch {
            await database.close()
            throw error
        }
        await database.close()
    }

    /// Serves from an open database until shutdown; the caller closes the database, however this ends.
    private func serve(
        _ database: CoordinatorDatabase, gracefulShutdownSignals: [UnixSignal],
        onListening: @escaping @Sendable (Int) async -> Void
    ) async throws {
        let settings = settings
        let store = database.store
        let registries = RegistryClientPool(configuration: registryConfiguration(), logger: logger)
        defer { registries.shutdown() }
        let notifier = WorkNotifier()
        let metrics = CoordinatorMetrics()
        store.recordTransactionDurations(with: metrics.factory)
        let tracing = try CoordinatorTracing.make(settings: settings, environment: environment, logger: logger)
        let caPEM = settings.tls ? try String(contentsOf: state.caCertificate, encoding: .utf8) : nil
        let api = CoordinatorAPI(
            store: store, notifier: notifier, metrics: metrics,
            options: .init(
                leaseTTLSeconds: settings.leaseTTLSeconds, heartbeatIntervalSeconds: settings.heartbeatIntervalSeconds,
                pollTimeout: .seconds(settings.pollTimeoutSeconds), maxContextBytes: settings.maxContextBytes,
                maxRequestBodyBytes: settings.maxRequestBodyBytes,
                contextsDirectory: state.contexts, caCertificatePEM: caPEM, allowedRegistries: settings.allowedRegistries,
                maxQueuedBuildsPerToken: settings.maxQueuedBuildsPerToken, maxPlatformsPerBuild: settings.maxPlatformsPerBuild,
                maxStreamsPerToken: settings.maxStreamsPerToken, authFailuresPerMinute: settings.authFailuresPerMinute,
                sharedContexts: database.isShared),
            hash: Secrets.hash, generateSecret: Secrets.generate(prefix:),
            dashboardKey: DashboardSessions.deriveKey(from: try state.loadOrCreateSecretsKey().data), tracing: tracing)

        let (host, port) = try CoordinatorSettings.parseListen(settings.listen)
        let limits = ConnectionLimits(settings)
        let server = limits.serverBuilder(
            tls: settings.tls
                ? TLSConfiguration.makeServerConfiguration(
                    certificateChain: try NIOSSLCertificate.fromPEMFile(state.serverCertificate.path).map { .certificate($0) },
                    privateKey: .privateKey(try NIOSSLPrivateKey(file: state.serverKey.path, format: .pem)))
                : nil)
        let logger = logger
        let app = Application(
            router: api.router(),
            server: server,
            configuration: ApplicationConfiguration(
                address: .hostname(host, port: port), serverName: "manifold",
                availableConnectionsDelegate: limits.availableConnections(logger: logger)),
            onServerRunning: { channel in
                let bound = channel.localAddress?.port ?? port
                logger.info(
                    "coordinator listening",
                    metadata: ["address": "\(settings.tls ? "https" : "http")://\(host):\(bound)", "state": "\(state.root.path)"])
                await onListening(bound)
            },
            logger: logger)
        // Graceful shutdown runs in reverse order: first end held polls and streams, then let the server
        // finish in-flight requests, then stop publishing, verifying and expiring leases, and last send the spans
        // still held.
        let exporter: [any Service] = tracing.service.map { [$0] } ?? []
        // What the verifier read about a checked image, handed to the publisher so a list's plan reads no child again.
        let resolvedSources = ResolvedSourceCache()
        let group = ServiceGroup(
            configuration: ServiceGroupConfiguration(
                services: exporter + [
                    LeaseReaper(
                        store: store, notifier: notifier, metrics: metrics, startupGrace: .seconds(settings.leaseTTLSeconds),
                        logger: logger),
                    Verifier(
                        store: store, registries: registries, notifier: notifier, metrics: metrics, logger: logger,
                        perRegistry: settings.registryConcurrency, itemDeadline: .seconds(settings.registryDeadlineSeconds),
                        tracing: tracing, resolvedSources: resolvedSources),
                    Publisher(
                        store: store, registries: registries, notifier: notifier, metrics: metrics, logger: logger,
                        perRegistry: settings.registryConcurrency, itemDeadline: .seconds(settings.registryDeadlineSeconds),
                        tracing: tracing, resolvedSources: resolvedSources),
                    RetentionService(
                        store: store, policy: settings.retentionPolicy, contexts: ContextDirectory(state.contexts),
                        metrics: metrics, interval: .seconds(settings.retentionIntervalSeconds),
                        startDelay: .seconds(min(60, settings.retentionIntervalSeconds)), logger: logger),
                    app,
                    ShutdownWaker(notifier: notifier),
                ] + (database.wakeups.map { [ReplicaWakeups(notifier: notifier, channel: $0, logger: logger)] } ?? []),
                gracefulShutdownSignals: gracefulShutdownSignals,
                logger: logger))
        try await group.run()
    }

    func registryConfiguration() -> RegistryConfiguration {
        var caFiles: [String: [String]] = [:]
        for (host, file) in settings.registryCAs { caFiles[host, default: []].append(file) }
        return RegistryConfiguration(
            plainHTTPHosts: Set(settings.insecureRegistries), caFiles: caFiles,
            credentials: DockerConfig(file: state.dockerConfigDirectory.appendingPathComponent("config.json")),
            allowedRegistries: settings.allowedRegistries, allowedRegistriesSetting: "allowed_registries",
            limits: AssemblyLimits(maxCopiedBytes: settings.maxCopiedBytesPerBuild))
    }

    /// Renders a per-platform tag. Windows images of different OS builds need different tags, so the build
    /// number is appended when the template does not already use `{osversion}`.
    static func childTag(template: String, tag: String, platform: Platform) -> String {
        var rendered = CoordinatorSettings.childTag(
            template: template, tag: tag, os: platform.os, architecture: platform.architecture, variant: platform.variant,
            osVersion: platform.osVersion)
        if platform.os == "windows", !template.contains("{osversion}"),
            let build = platform.osVersion.flatMap(Platform.windowsBuild)
        {
            rendered = String((rendered + "-" + build).prefix(128))
        }
        return rendered
    }
}

/// Ends held long polls and event streams as soon as graceful shutdown starts.
struct ShutdownWaker: Service {
    let notifier: WorkNotifier
    func run() async throws {
        try? await gracefulShutdown()
        notifier.shutDown()
    }
}

public struct CoordinatorError: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}
