import Foundation
import ManifoldAPI
import ManifoldArchive
import ManifoldClient
import ManifoldCore
import ManifoldHTTP

/// Puts a job's build context into its work directory: an uploaded tar.gz (downloaded, digest-verified, unpacked
/// safely) or a git repository cloned at a ref.
struct ContextFetcher: Sendable {
    var client: CoordinatorClient
    var maxContextBytes: Int64

    func fetch(
        _ source: ContextSource, into directory: URL, scratch: URL, log: LogSpool, stop: StopSignal, grace: Duration
    ) async throws {
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        switch source {
        case .upload(let digest):
            let archive = scratch.appendingPathComponent("context.tar.gz")
            log.note("downloading context \(digest)")
            try await client.downloadContext(digest, to: archive)
            let actual = try await Blocking.run { try Self.digest(of: archive, algorithm: digest.algorithm) }
            guard actual == digest else {
                throw AgentError("the downloaded context has digest \(actual), not the expected \(digest); refusing it")
            }
            do {
                let limits = ContextUnpacker.Limits(maxTotalBytes: maxContextBytes)
                let summary = try await Blocking.run {
                    try ContextUnpacker(limits: limits).unpack(archive: archive, into: directory)
                }
                log.note("context unpacked: \(summary.entries) entries, \(summary.totalBytes) bytes")
            } catch let error as ArchiveError {
                throw AgentError("the build context was refused: \(error)")
            }
            try? FileManager.default.removeItem(at: archive)
        case .git(let url, let ref):
            try Self.checkGitURL(url)
            log.note("cloning \(URLRedaction.display(url)) at \(ref)")
            var environment = ProcessInfo.processInfo.environment
            environment["GIT_TERMINAL_PROMPT"] = "0"
            let safety = ["-c", "protocol.file.allow=never", "-c", "protocol.ext.allow=never"]
            let steps: [[String]] = [
                safety + ["clone", "--quiet", "--no-checkout", "--", url, directory.path],
                safety + ["-C", directory.path, "fetch", "--quiet", "origin", ref],
                safety + ["-C", directory.path, "checkout", "--quiet", "--detach", "FETCH_HEAD"],
            ]
            for arguments in steps {
                let outcome = try await ProcessRunner.run(
                    "git", arguments, environment: environment, workingDirectory: scratch, log: log, stop: stop,
                    grace: grace)
                if outcome.stoppedFor != nil { return }
                guard outcome.exitCode == 0 else {
                    throw AgentError("git \(arguments[safety.count]) failed with status \(outcome.exitCode)")
                }
            }
        }
    }

    /// Only network transports: a `file://` URL or a local path would let a build read the agent's host.
    static func checkGitURL(_ url: String) throws {
        let lower = url.lowercased()
        let allowed = ["https://", "http://", "ssh://"]
        let scpLike = !lower.contains("://") && lower.contains("@") && lower.contains(":") && !lower.hasPrefix("-")
        guard allowed.contains(where: lower.hasPrefix) || scpLike else {
            throw AgentError(
                "the git URL \"\(url)\" is refused: only https://, http://, ssh:// and user@host:path are allowed")
        }
    }

    static func digest(of file: URL, algorithm: Digest.Algorithm) throws -> Digest {
        let handle = try FileHandle(forReadingFrom: file)
        defer { try? handle.close() }
        var hasher = DigestHasher(algorithm)
        while let chunk = try handle.read(upToCount: 1 << 20), !chunk.isEmpty { hasher.update(chunk) }
        return hasher.finalize()
    }
}
