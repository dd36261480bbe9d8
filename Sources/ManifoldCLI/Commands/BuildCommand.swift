import ArgumentParser
import Foundation
import ManifoldAPI
import ManifoldClient
import ManifoldCore
import ManifoldHTTP

#if canImport(ucrt)
import ucrt
#endif

/// `manifold build`: submit, watch and manage multi-platform builds.
struct BuildCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "build",
        abstract: "Submit, watch and manage multi-platform builds.",
        discussion: """
            Examples:
              manifold build submit registry.example.com/team/app -t 1.0 -p linux/amd64 -p linux/arm64 --watch
              manifold build watch bld_7c1e2a…
              manifold build logs bld_7c1e2a… --platform linux/arm64 --follow
              manifold build retry bld_7c1e2a… --platform windows/amd64
            """,
        subcommands: [
            BuildSubmit.self, BuildWatch.self, BuildLogs.self, BuildList.self, BuildShow.self, BuildCancel.self,
            BuildRetry.self,
        ])
}

struct BuildWatch: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "watch",
        abstract: "Follow a build until it is published or fails (exit code 0 or 1).",
        discussion: """
            On a terminal, a table redrawn in place: one row per platform with its state, agent, elapsed time, \
            attempt, digest and latest log line, and the list's progress below. Otherwise one line per event; \
            --output json prints the coordinator's events, one JSON object per line. A dropped connection is \
            resumed after the last event received. Exit code 0 when the list is published (also partially, when \
            the build allows it), 1 when the build failed or was cancelled.

            Examples:
              manifold build watch bld_7c1e2a…
              manifold build watch bld_7c1e2a… --output json | jq -r .type
              manifold build watch bld_7c1e2a… --plain > build.log

            Log lines, reasons and names come from builds and agents, so terminal control sequences (escape \
            sequences, carriage returns, other control characters) are removed from them unless --raw is given.
            """)

    @Argument(help: ArgumentHelp("The build id.", valueName: "id")) var id: String
    @Flag(help: "One line per event even on a terminal.") var plain = false
    @Flag(help: "Print log text and reasons as received, terminal control sequences included (removed by default).") var raw =
        false
    @Option(help: "Output format: text or json.") var output: OutputFormat = .text
    @OptionGroup var coordinator: CoordinatorOptions

    func run() async throws {
        let client = try coordinator.client()
        try await Self.watch(id, client: client, output: output, plain: plain, raw: raw)
    }

    /// Watches `id`; throws `ExitCode.failure` unless the list was published.
    static func watch(
        _ id: String, client: CoordinatorClient, output: OutputFormat, plain: Bool = false, raw: Bool = false
    ) async throws {
        let mode: BuildWatcher.Mode =
            output == .json ? .json : (!plain && Terminal.isStandardOutputTerminal ? .table : .lines)
        let build = try await BuildWatcher(client: client, buildId: id, mode: mode, raw: raw).run()
        guard build.state == .published || build.state == .partiallyPublished else { throw ExitCode.failure }
    }
}

struct BuildLogs: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "logs",
        abstract: "Print a platform's build log (the latest attempt unless --attempt is given).",
        discussion: """
            Examples:
              manifold build logs bld_7c1e2a… --platform linux/arm64
              manifold build logs bld_7c1e2a… --platform windows/amd64 --attempt 1
              manifold build logs bld_7c1e2a… --platform linux/amd64 --follow
              manifold build logs bld_7c1e2a… --platform linux/amd64 --raw > build.log   # byte for byte

            The log is what the builder printed, so terminal control sequences (escape sequences, carriage \
            returns, other control characters except newline and tab) are removed unless --raw is given.
            """)

    @Argument(help: ArgumentHelp("The build id.", valueName: "id")) var id: String
    @Option(name: .shortAndLong, help: ArgumentHelp("The platform, e.g. linux/arm64.", valueName: "platform"))
    var platform: String
    @Option(help: ArgumentHelp("The attempt number (1 is the first).", valueName: "n")) var attempt: Int?
    @Flag(name: .shortAndLong, help: "Keep printing as the log grows, until the attempt ends.") var follow = false
    @Flag(help: "Print the log byte for byte, terminal control sequences included.") var raw = false
    @OptionGroup var coordinator: CoordinatorOptions

    func validate() throws {
        if let attempt, attempt < 1 { throw ValidationError("--attempt must be 1 or more, got \(attempt)") }
        do { _ = try Platform(parsing: platform) } catch { throw ValidationError("--platform: \(error)") }
    }

    func run() async throws {
        let client = try coordinator.client()
        let platform = try Platform(parsing: platform).description
        if follow {
            try await Self.follow(client: client, buildId: id, platform: platform, attempt: attempt, raw: raw)
        } else {
            let log = try await client.log(buildId: id, platform: platform, attempt: attempt)
            var filter = TerminalText.Filter()
            FileHandle.standardOutput.write(raw ? log : filter.clean(log))
        }
    }

    /// Follows one attempt's log to its end. A log stream carries nothing while the build is quiet, so the
    /// client's stall limit can end it; then it is reopened from the last byte printed, for the same attempt
    /// (pinned up front so a retry's new log is never spliced on).
    static func follow(
        client: CoordinatorClient, buildId: String, platform: String, attempt: Int?, raw: Bool = false
    ) async throws {
        var pinned = attempt
        if pinned == nil {
            let build = try await client.build(id: buildId)
            let wanted = try Platform(parsing: platform).normalized()
            pinned = build.jobs.first { $0.platform.normalized().key == wanted.key && $0.attempts > 0 }?.attempts
        }
        var offset: Int64 = 0
        var failures = 0
        // One filter for the whole log: a reconnection resumes at the next byte, inside a sequence or not.
        var filter = TerminalText.Filter()
        while true {
            do {
                for try await chunk in try await client.followLog(
                    buildId: buildId, platform: platform, attempt: pinned, offset: offset)
                {
                    FileHandle.standardOutput.write(raw ? chunk : filter.clean(chunk))
                    offset += Int64(chunk.count)
                    failures = 0
                }
                return  // the coordinator ended the stream: the attempt is over
            } catch let error as CoordinatorClientError where error.isRetryable && failures < 10 {
                failures += 1
            } catch let error as HTTPClientError where error.isRetryable && failures < 10 {
                failures += 1
            }
            try await Task.sleep(for: .seconds(min(failures, 5)))
        }
    }
}

struct BuildList: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "list",
        abstract: "List builds, newest first.",
        discussion: """
            Examples:
              manifold build list
              manifold build list --state failed --image registry.example.com/team/app --limit 50
              manifold build list --before bld_7c1e2a…          # the next page
              manifold build list --output json
            """)

    @Option(
        help: ArgumentHelp(
            "Only builds in this state: \(BuildState.allCases.map(\.rawValue).joined(separator: ", ")).",
            valueName: "state"))
    var state: String?
    @Option(help: ArgumentHelp("Only builds of this REGISTRY/REPOSITORY.", valueName: "image")) var image: String?
    @Option(help: ArgumentHelp("Builds per page (1–500).", valueName: "n")) var limit = 20
    @Option(help: ArgumentHelp("Start after this build id (from the previous page).", valueName: "id")) var before: String?
    @Option(help: "Output format: text or json.") var output: OutputFormat = .text
    @OptionGroup var coordinator: CoordinatorOptions

    func validate() throws {
        if let state, BuildState(rawValue: state) == nil {
            throw ValidationError(
                "--state \(state) is not one of \(BuildState.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        if !(1...500).contains(limit) { throw ValidationError("--limit must be 1…500, got \(limit)") }
    }

    func run() async throws {
        let client = try coordinator.client()
        let page = try await client.builds(state: state.flatMap(BuildState.init), image: image, before: before, limit: limit)
        switch output {
        case .json: print(try APIJSON.string(page))
        case .text:
            if page.builds.isEmpty {
                print("No builds.")
                return
            }
            let now = Date()
            var table = TextTable(["ID", "STATE", "IMAGE", "TAGS", "PLATFORMS", "SUBMITTED", "BY"])
            for build in page.builds {
                let done = build.jobs.filter { $0.state == .succeeded }.count
                table.add([
                    build.id, build.state.rawValue, build.image, build.tags.joined(separator: ","),
                    "\(done)/\(build.jobs.count)", HumanFormat.age(build.createdAt, now: now), build.submittedBy ?? "-",
                ])
            }
            print(table.render(), terminator: "")
            if let next = page.next { Terminal.writeError("More: manifold build list --before \(next)\n") }
        }
    }
}

struct BuildShow: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "show",
        abstract: "Show a build: state, list digest, and each platform's digest, agent and timings.",
        discussion: """
            Examples:
              manifold build show bld_7c1e2a…
              manifold build show bld_7c1e2a… --output json | jq -r .listDigest

            Reasons and names come from builds and agents, so terminal control sequences are removed from the text \
            output unless --raw is given (JSON output escapes them).
            """)

    @Argument(help: ArgumentHelp("The build id.", valueName: "id")) var id: String
    @Flag(help: "Print log text and reasons as received, terminal control sequences included (removed by default).") var raw =
        false
    @Option(help: "Output format: text or json.") var output: OutputFormat = .text
    @OptionGroup var coordinator: CoordinatorOptions

    func run() async throws {
        let build = try await coordinator.client().build(id: id)
        switch output {
        case .json: print(try APIJSON.string(build))
        case .text:
            let text = BuildRendering.show(build, now: Date())
            print(raw ? text : TerminalText.clean(text), terminator: "")
        }
    }
}

struct BuildCancel: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "cancel",
        abstract: "Cancel a build: queued platforms stop at once, running ones at their agent's next heartbeat.",
        discussion: "Example:\n  manifold build cancel bld_7c1e2a…")

    @Argument(help: ArgumentHelp("The build id.", valueName: "id")) var id: String
    @Option(help: "Output format: text or json.") var output: OutputFormat = .text
    @OptionGroup var coordinator: CoordinatorOptions

    func run() async throws {
        let build = try await coordinator.client().cancel(buildId: id)
        switch output {
        case .json: print(try APIJSON.string(build))
        case .text: print("Cancelled build \(build.id); nothing will be published.")
        }
    }
}

struct BuildRetry: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "retry",
        abstract: "Run one platform of a build again; the list is re-published when it reports.",
        discussion: """
            Examples:
              manifold build retry bld_7c1e2a… --platform windows/amd64:10.0.20348
              manifold build retry bld_7c1e2a… --platform linux/arm64 --watch
              manifold build retry bld_7c1e2a… --platform linux/amd64 --secret NPM_TOKEN

            A build with secrets erases them when it finishes: retrying one of its platforms then needs them \
            again, all of them (--secret, --secret-file, as for build submit).
            """)

    @Argument(help: ArgumentHelp("The build id.", valueName: "id")) var id: String
    @Option(name: .shortAndLong, help: ArgumentHelp("The platform to run again.", valueName: "platform")) var platform: String
    @Option(
        name: .customLong("secret"),
        help: ArgumentHelp("A build secret again; NAME alone reads $NAME. Repeatable.", valueName: "name[=value]"))
    var secrets: [String] = []
    @Option(
        name: .customLong("secret-file"),
        help: ArgumentHelp("A build secret again, read from a file. Repeatable.", valueName: "name=path"))
    var secretFiles: [String] = []
    @Flag(help: "Watch the build until the list is published again.") var watch = false
    @Option(help: "Output format: text or json.") var output: OutputFormat = .text
    @OptionGroup var coordinator: CoordinatorOptions

    func validate() throws {
        do { _ = try Platform(parsing: platform) } catch { throw ValidationError("--platform: \(error)") }
    }

    func run() async throws {
        let client = try coordinator.client()
        let given: [String: String]
        do {
            given = try SubmitPlan.secrets(
                secrets, files: secretFiles, environment: ProcessInfo.processInfo.environment,
                currentDirectory: URL(fileURLWithPath: FileManager.default.currentDirectoryPath))
        } catch let error as SubmitError {
            throw ValidationError(error.description)
        }
        let build = try await client.retry(
            buildId: id, platform: try Platform(parsing: platform).description, secrets: given.isEmpty ? nil : given)
        switch output {
        case .json: print(try APIJSON.line(build))
        case .text: print("Queued \(platform) of build \(build.id) again.")
        }
        fflush(nil)
        if watch { try await BuildWatch.watch(build.id, client: client, output: output) }
    }
}
