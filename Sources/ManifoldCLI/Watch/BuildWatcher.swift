import Foundation
import ManifoldAPI
import ManifoldClient
import ManifoldCore

/// Follows a build's events until it is final, reconnecting (and resuming after the last event seen) when the
/// stream drops, and shows them as a live table, plain lines or JSON lines.
struct BuildWatcher {
    enum Mode: Sendable {
        /// Redrawn in place on a terminal.
        case table
        /// One line per event.
        case lines
        /// One JSON event per line.
        case json
    }

    var client: CoordinatorClient
    var buildId: String
    var mode: Mode
    /// Shows log lines, reasons and names as received, terminal control sequences included.
    var raw = false
    /// Gives up after this many reconnections in a row that failed.
    var maxReconnects = 60

    /// Watches until the build is final; returns its final view.
    func run() async throws -> BuildView {
        let display = WatchDisplay(mode: mode, raw: raw, build: try await client.build(id: buildId), client: client)
        await display.refreshAgents()
        await display.draw()
        let ticker: Task<Void, Never>? =
            mode == .table
            ? Task {
                while !Task.isCancelled {
                    try? await Task.sleep(for: .seconds(1))
                    await display.tick()
                }
            } : nil
        defer { ticker?.cancel() }
        var failures = 0
        while true {
            let after = await display.lastEventId
            do {
                let stream = try await client.events(buildId: buildId, after: after)
                for try await event in stream {
                    failures = 0
                    try await display.apply(event)
                }
                let build = try await client.build(id: buildId)
                await display.update(build)
                if build.state.isFinal {
                    await display.finish()
                    return build
                }
                // The coordinator ended the stream (e.g. while shutting down) before the end: connect again.
                try await Task.sleep(for: .milliseconds(500))
            } catch let error as CoordinatorClientError where !error.isRetryable {
                throw error
            } catch is CancellationError {
                throw CancellationError()
            } catch {
                failures += 1
                guard failures <= maxReconnects else {
                    throw CLIError("lost the connection to the coordinator and could not reconnect: \(error)")
                }
                await display.connectionLost(error, retry: failures)
                try await Task.sleep(for: .milliseconds(min(5000, 250 * (1 << min(failures, 5)))))
            }
        }
    }
}

/// The state of one watch and its output; an actor so the ticker and the event stream take turns.
actor WatchDisplay {
    let mode: BuildWatcher.Mode
    let raw: Bool
    let client: CoordinatorClient
    private var progress: BuildProgress
    private var drawnLines = 0
    private var hinted: Set<String> = []
    private var agentsReadAt = Date.distantPast

    init(mode: BuildWatcher.Mode, raw: Bool, build: BuildView, client: CoordinatorClient) {
        self.mode = mode
        self.raw = raw
        self.client = client
        self.progress = BuildProgress(build: build)
    }

    var lastEventId: Int64 { progress.lastEventId }

    func apply(_ event: BuildEvent) async throws {
        guard event.id > progress.lastEventId else { return }
        progress.apply(event)
        switch mode {
        case .json:
            Terminal.write(try APIJSON.line(event) + "\n")
        case .lines:
            if let line = BuildRendering.line(for: event, build: progress.build) { Terminal.write(shown(line) + "\n") }
            // A line needs only what the event says; the view (and the agents, every few seconds) matters for the
            // hint of a platform that waits, so it is read again only while a job waits or may have gone back to the
            // queue. The view after the last event is read once the stream ends.
            if Self.mayQueueAJob(event.type)
                || (event.type != "job.log" && progress.build.jobs.contains { $0.state == .queued })
            {
                try await refresh()
            }
            printHints()
        case .table:
            // Log lines change one cell; anything else may change the row, so read the build again.
            if event.type != "job.log" { try await refresh() }
            draw()
        }
    }

    /// Events after which a job may be queued again (a retry, a lost or given-back attempt), which changes whether the
    /// plain watch says what kind of host it waits for.
    static func mayQueueAJob(_ type: String) -> Bool {
        ["job.queued", "job.retrying", "job.lost", "job.released"].contains(type)
    }

    func update(_ build: BuildView) {
        progress.build = build
    }

    /// Reads the build again (and the agents, at most every few seconds while a platform waits).
    private func refresh() async throws {
        progress.build = try await client.build(id: progress.build.id)
        if progress.build.jobs.contains(where: { $0.state == .queued }), Date().timeIntervalSince(agentsReadAt) > 3 {
            await refreshAgents()
        }
    }

    func refreshAgents() async {
        agentsReadAt = Date()
        progress.agents = try? await client.agents()
    }

    func tick() async {
        if progress.build.jobs.contains(where: { $0.state == .queued }), Date().timeIntervalSince(agentsReadAt) > 5 {
            await refreshAgents()
        }
        draw()
    }

    /// Plain mode: says once per waiting spell which kind of host a platform waits for.
    private func printHints() {
        for job in progress.build.jobs {
            let key = "\(job.id)#\(job.attempts)"
            if let hint = progress.waitingHint(for: job) {
                if hinted.insert(key).inserted { Terminal.write(shown("[\(job.platform)] \(hint)") + "\n") }
            } else if job.state != .queued {
                hinted.remove(key)
            }
        }
    }

    func draw() {
        switch mode {
        case .json, .lines: return
        case .table:
            let lines = BuildRendering.table(progress, now: Date(), width: Terminal.columns - 1)
            var output = drawnLines > 0 ? "\u{1B}[\(drawnLines)F" : ""
            for line in lines { output += "\u{1B}[2K" + shown(line) + "\n" }
            output += "\u{1B}[J"
            drawnLines = lines.count
            Terminal.write(output)
        }
    }

    func connectionLost(_ error: any Error, retry: Int) {
        let message = "connection to the coordinator lost (\(error)); reconnecting (\(retry))…\n"
        switch mode {
        case .table:
            // Below the table, which the next redraw replaces.
            Terminal.writeError(message)
            drawnLines = 0
        case .lines, .json: Terminal.writeError(message)
        }
    }

    /// Text from builds and agents as it may reach the terminal: without control sequences unless `raw`.
    private func shown(_ text: String) -> String {
        raw ? text : TerminalText.clean(text)
    }

    func finish() {
        if mode == .table { draw() }
    }
}
