import Foundation
import ManifoldAPI
import ManifoldCore

/// The tools the agent can build with.
public enum BuilderKind: String, CaseIterable, Sendable {
    case docker, buildx, buildah, podman, command
}

/// One build, everything a builder needs.
struct BuildRequest: Sendable {
    var spec: JobSpec
    var contextDirectory: URL
    /// Scratch space for digest and metadata files, outside the context.
    var workDirectory: URL
    var log: LogSpool
    var stop: StopSignal
    var grace: Duration
    /// The agent's environment plus anything the builder adds.
    var environment: [String: String]
    /// Records running builders so a restarted agent can kill what a crashed one left.
    var tracker: ProcessTracker? = nil
    /// The owner-only directory holding one owner-only file per build secret, named after the secret; nil when
    /// the job has no secrets.
    var secrets: BuildSecrets? = nil
    /// Times each step as a phase of the job's trace (`push` for a push, `build` for the rest).
    var phases: PhaseTimer? = nil

    var imageReference: String { "\(spec.image):\(spec.tag)" }

    /// `--platform` as the tools spell it: os/arch[/variant].
    var platformArgument: String {
        [spec.platform.os, spec.platform.architecture, spec.platform.variant].compactMap { $0 }.joined(separator: "/")
    }

    /// The Dockerfile inside the context; refuses one that points outside it.
    func dockerfilePath() throws -> String {
        let name = spec.dockerfile.isEmpty ? "Dockerfile" : spec.dockerfile
        let parts = name.split(whereSeparator: { $0 == "/" || $0 == "\\" })
        guard !name.hasPrefix("/"), !name.hasPrefix("\\"), !parts.contains(".."), !name.contains(":") else {
            throw AgentError("the Dockerfile path \"\(name)\" points outside the build context")
        }
        return contextDirectory.appendingPathComponent(name).path
    }
}

/// How a build ended.
enum BuildResult: Sendable, Equatable {
    case succeeded(imageReference: String, digest: Digest)
    case failed(exitCode: Int?, reason: String)
    case stopped(StopReason)
}

/// Builds and pushes one image.
protocol Builder: Sendable {
    func build(_ request: BuildRequest) async throws -> BuildResult
}

extension Builder {
    /// Runs one step; a non-zero exit or a stop ends the build with the reason and the last log lines.
    func step(
        _ request: BuildRequest, _ name: String, _ executable: String, _ arguments: [String],
        environment: [String: String]? = nil
    ) async throws -> BuildResult? {
        request.log.note("\(name): \(executable) \(arguments.joined(separator: " "))")
        let started = Date()
        let outcome = try await ProcessRunner.run(
            executable, arguments, environment: environment ?? request.environment,
            workingDirectory: request.contextDirectory, log: request.log, stop: request.stop, grace: request.grace,
            tracker: request.tracker)
        request.phases?.record(
            name == "push" ? JobPhase.push : JobPhase.build, from: started,
            failed: outcome.stoppedFor != nil || outcome.exitCode != 0)
        if let reason = outcome.stoppedFor { return .stopped(reason) }
        guard outcome.exitCode == 0 else {
            let tail = request.log.tail(lines: 15)
            return .failed(
                exitCode: Int(outcome.exitCode),
                reason: "\(name) (\(executable)) exited with status \(outcome.exitCode); last log lines:\n\(tail)")
        }
        return nil
    }

    /// Reads a digest the builder wrote to `file`, or explains that it did not.
    func digest(in file: URL, _ request: BuildRequest, tool: String) -> BuildResult {
        guard let text = try? String(contentsOf: file, encoding: .utf8),
            !text.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty
        else {
            return .failed(
                exitCode: nil,
                reason: "\(tool) finished without writing a digest to \(file.lastPathComponent); last log lines:\n"
                    + request.log.tail(lines: 15))
        }
        let trimmed = text.trimmingCharacters(in: .whitespacesAndNewlines)
        guard let digest = try? Digest(parsing: trimmed) else {
            return .failed(exitCode: nil, reason: "\(tool) wrote \"\(trimmed.prefix(100))\", which is not a digest")
        }
        return .succeeded(imageReference: request.imageReference, digest: digest)
    }

    /// `--build-arg` for each build arg that is not secret, `--secret id=NAME,src=FILE` for each secret (the
    /// value stays in its file: never in the builder's argv, environment or the image), `--label` for each label.
    func buildArguments(_ request: BuildRequest) -> [String] {
        var arguments: [String] = []
        for (name, value) in request.spec.plainBuildArgs.sorted(by: { $0.key < $1.key }) {
            arguments += ["--build-arg", "\(name)=\(value)"]
        }
        for (name, file) in request.secrets?.files.sorted(by: { $0.key < $1.key }) ?? [] {
            arguments += ["--secret", "id=\(name),src=\(file.path)"]
        }
        for (name, value) in request.spec.labels.sorted(by: { $0.key < $1.key }) {
            arguments += ["--label", "\(name)=\(value)"]
        }
        return arguments
    }
}

/// Picks the builder for the settings.
enum Builders {
    static func make(_ settings: AgentSettings) throws -> any Builder {
        switch BuilderKind(rawValue: settings.builder) {
        case .docker: return DockerBuilder(extraArguments: settings.builderArguments)
        case .buildx: return BuildxBuilder(extraArguments: settings.builderArguments)
        case .buildah, .podman:
            return OCIToolBuilder(
                executable: settings.builder, globalArguments: settings.globalArguments,
                buildArguments: settings.builderArguments, pushArguments: settings.pushArguments)
        case .command:
            guard let command = settings.command else {
                throw AgentError("the command builder needs --command PATH (or command = PATH in the config file)")
            }
            return CommandBuilder(executable: command, arguments: settings.builderArguments)
        case nil: throw AgentError("unknown builder \"\(settings.builder)\"")
        }
    }
}
