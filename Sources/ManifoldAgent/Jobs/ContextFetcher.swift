import Foundation
import Logging
import ManifoldAPI
import ManifoldArchive
import ManifoldClient
import ManifoldCore
import ManifoldHTTP

/// Puts a job's build context into its work directory: an uploaded tar.gz (downloaded, digest-verified, unpacked
/// safely) or a git repository cloned at a ref over a transport ``GitSourcePolicy`` allows, then checked by the
/// unpacker's rules (no symlink out of the checkout, no special files, the size limit).
///
/// A download that fails in a way that may pass (no answer, 5xx — a restarting coordinator's 503, a full disk's
/// 507 — 429 or 408) is tried again with backoff for as long as the job is not stopped; the lease keeper goes on
/// heartbeating meanwhile, so a coordinator restart or a network blip during the download costs no attempt.
struct ContextFetcher: Sendable {
    var client: CoordinatorClient
    var maxContextBytes: Int64
    var git = GitSourcePolicy()
    /// The longest wait between two download tries.
    var retryCap: Duration = .seconds(10)
    var logger: Logger = Logger(label: "manifold.agent")

    func fetch(
        _ source: ContextSource, into directory: URL, scratch: URL, log: LogSpool, stop: StopSignal, grace: Duration
    ) async throws {
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        switch source {
        case .upload(let digest):
            let archive = scratch.appendingPathComponent("context.tar.gz")
            log.note("downloading context \(digest)")
            guard try await download(digest, to: archive, log: log, stop: stop) else { return }
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
            let transport = try git.check(url)
            log.note("cloning \(URLRedaction.display(url)) at \(ref)")
            var environment = ProcessInfo.processInfo.environment
            environment["GIT_TERMINAL_PROMPT"] = "0"
            // git itself (redirects, submodules, remote helpers) may use only the transport that was allowed.
            environment["GIT_ALLOW_PROTOCOL"] = GitSourcePolicy.allowedProtocols(for: transport)
            if transport != .ssh {
                // Never let a redirect or helper reach for this host's ssh keys.
                environment["GIT_SSH_COMMAND"] = "false"
            }
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
            do {
                let limits = ContextUnpacker.Limits(maxTotalBytes: maxContextBytes)
                let summary = try await Blocking.run {
                    try ContextUnpacker(limits: limits).validate(directory: directory)
                }
                log.note("checkout checked: \(summary.entries) entries, \(summary.totalBytes) bytes")
            } catch let error as ArchiveError {
                throw AgentError("the git checkout was refused: \(error)")
            }
        }
    }

    /// Downloads until it succeeds (true), the job is stopped (false), or the coordinator refuses for good (throws).
    func download(_ digest: Digest, to archive: URL, log: LogSpool, stop: StopSignal) async throws -> Bool {
        var backoff = Backoff(initial: .milliseconds(500), cap: retryCap)
        var failures = 0
        while stop.requested == nil {
            do {
                guard try await stop.unlessRequested({ try await client.downloadContext(digest, to: archive) }) != nil else {
                    return false
                }
                if failures > 0 { log.note("context downloaded after \(failures) failed tries") }
                return true
            } catch let error as CoordinatorClientError where error.isWorthRetryingWithinLease {
                failures += 1
                let delay = backoff.next()
                logger.warning("downloading the context \(digest) failed (\(error)); trying again in \(delay)")
                log.note("downloading the context failed (\(error)); trying again")
                _ = try? await stop.unlessRequested { try await Task.sleep(for: delay) }
            }
        }
        return false
    }

    static func digest(of file: URL, algorithm: Digest.Algorithm) throws -> Digest {
        let handle = try FileHandle(forReadingFrom: file)
        defer { try? handle.close() }
        var hasher = DigestHasher(algorithm)
        while let chunk = try handle.read(upToCount: 1 << 20), !chunk.isEmpty { hasher.update(chunk) }
        return hasher.finalize()
    }
}
