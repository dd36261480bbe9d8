import CCurl
import Foundation
import Logging

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#elseif canImport(ucrt)
import ucrt
#endif

/// libcurl's process-wide initialisation, run once (Swift initialises globals exactly once, thread-safely).
///
/// libcurl initialises OpenSSL here, which registers OpenSSL's `atexit` cleanup; the handler registered after it runs
/// before it, and stops and joins every client thread first (see `LoopThreadRegistry`).
private let curlGlobalInitialization: Bool = {
    guard manifold_curl_global_init() == CURLE_OK else { return false }
    atexit { LoopThreadRegistry.shared.stopAllBeforeExit() }
    return true
}()

/// One `curl_multi` handle and the dedicated thread that drives it.
///
/// Every libcurl call on an easy or multi handle happens on that thread, so no blocking call ever
/// runs on the Swift concurrency pool. Other threads talk to it only through `submit(_:)`, which
/// queues a command under `lock` and wakes the thread with `curl_multi_wakeup` (thread-safe).
final class CurlEventLoop: @unchecked Sendable {
    // Safe to share: `multi` is used by the loop thread only, except `curl_multi_wakeup`, which libcurl
    // documents as thread-safe and which is called under `lock` while `isShutDown` is false, that is,
    // strictly before the loop thread calls `curl_multi_cleanup`. `commands`, `isShutDown`, `hasStopped` and
    // `stopWaiters` are guarded by `lock`; `active` and `cachedConnections` are touched by the loop thread only.
    enum Command {
        case add(CurlTransfer)
        case cancel(CurlTransfer)
        case unpause(CurlTransfer)
        case shutdown
    }

    private let multi: UnsafeMutableRawPointer
    private let lock = NSLock()
    private var commands: [Command] = []
    private var isShutDown = false
    private var hasStopped = false
    private var stopWaiters: [CheckedContinuation<Void, Never>] = []
    private var active: [UnsafeMutableRawPointer: CurlTransfer] = [:] {
        didSet {
            let count = active.count
            lock.withLock { activeCount = count }
        }
    }
    private var activeCount = 0
    private var resumeCount = 0
    private var wakeupCount = 0
    let logger: Logger

    /// How many idle connections the handle keeps for reuse (`CURLMOPT_MAXCONNECTS`) at least. libcurl's default is four
    /// per transfer under way at the moment a connection comes back, so a client that just ran five requests side by
    /// side and is now down to one (an agent whose held poll returned a lease, after a job's heartbeat, log, context and
    /// report) closed the spare connections and paid a TLS handshake for each again on the next burst. Idle connections
    /// still close after libcurl's maximum age or when the server closes them.
    static let idleConnections = 32
    /// The cache grows to the most transfers that were under way at once, up to this: libcurl counts connections in use
    /// against `CURLMOPT_MAXCONNECTS`, so with more transfers under way than the cache holds, every transfer that ended
    /// closed a connection and the next request opened one again (a TLS handshake each). Over HTTP/1.1, 50 manifest
    /// HEADs at a time to one registry ran at 94 a second, and at 479 with the cache grown (`deploy/bench/throughput.sh`).
    /// The cache does not shrink again: connections left idle close at libcurl's maximum age or when the server closes
    /// them.
    static let maxCachedConnections = 256
    /// The cache size set on the handle now (loop thread only).
    private var cachedConnections = CurlEventLoop.idleConnections
    /// The client's `caPEM` as a file libcurl reads once (see `CABundleFile`). Held by the loop, which the thread
    /// holds while it runs: the descriptor stays open for as long as libcurl may open its path.
    let caBundle: CABundleFile?

    init(logger: Logger, caBundle: CABundleFile? = nil) {
        precondition(curlGlobalInitialization, "curl_global_init failed")
        guard let multi = curl_multi_init() else { fatalError("curl_multi_init failed (out of memory)") }
        _ = manifold_curl_multi_setopt_long(multi, CURLMOPT_MAXCONNECTS, CLong(Self.idleConnections))
        self.multi = multi
        self.logger = logger
        self.caBundle = caBundle
        if !LoopThreadRegistry.shared.start(self, run: { [self] in run() }) {
            // The process is exiting: no thread starts, and every request fails with `shutDown`.
            isShutDown = true
            hasStopped = true
            curl_multi_cleanup(multi)
        }
    }

    /// Queues a command for the loop thread; false when the loop has shut down.
    @discardableResult
    func submit(_ command: Command) -> Bool {
        lock.lock()
        defer { lock.unlock() }
        guard !isShutDown else { return false }
        if case .shutdown = command { isShutDown = true }
        commands.append(command)
        curl_multi_wakeup(multi)
        return true
    }

    /// How many transfers are on the multi handle right now (for tests and diagnostics).
    var inFlightTransfers: Int { lock.withLock { activeCount } }

    /// How many times the thread woke from its wait (for tests: an idle client must not wake).
    var wakeups: Int { lock.withLock { wakeupCount } }

    /// How many times a stream paused for a slow consumer was resumed (for tests of backpressure).
    var streamResumptions: Int { lock.withLock { resumeCount } }

    /// Aborts every transfer with `HTTPClientError.shutDown` and stops the thread, without waiting for it.
    func shutdown() {
        submit(.shutdown)
    }

    /// Whether the thread has finished with libcurl: every transfer ended, the multi handle and its connections freed.
    var isStopped: Bool { lock.withLock { hasStopped } }

    /// Returns once the thread has finished with libcurl (see `isStopped`), without blocking a thread meanwhile.
    func waitUntilStopped() async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let stopped = lock.withLock {
                if !hasStopped { stopWaiters.append(continuation) }
                return hasStopped
            }
            if stopped { continuation.resume() }
        }
    }

    private func run() {
        while true {
            lock.lock()
            let pending = commands
            commands.removeAll()
            lock.unlock()
            var stop = false
            for command in pending {
                switch command {
                case .add(let transfer): start(transfer)
                case .cancel(let transfer): abort(transfer, with: transfer.cancellationError ?? .cancelled)
                case .unpause(let transfer):
                    lock.withLock { resumeCount += 1 }
                    transfer.unpause()
                case .shutdown: stop = true
                }
            }
            if stop { break }
            var running: Int32 = 0
            curl_multi_perform(multi, &running)
            collectFinished()
            // Sleeps until a transfer's socket is ready, curl's own next timer (curl shortens the wait to it), or a
            // `curl_multi_wakeup` from `submit`: an idle client's thread does not wake at all within the minute.
            curl_multi_poll(multi, nil, 0, 60_000, nil)
            lock.withLock { wakeupCount += 1 }
        }
        for transfer in Array(active.values) { abort(transfer, with: .shutDown) }
        lock.lock()
        let leftovers = commands
        commands.removeAll()
        lock.unlock()
        for case .add(let transfer) in leftovers { transfer.finish(.failure(.shutDown)) }
        curl_multi_cleanup(multi)
        let waiters = lock.withLock {
            hasStopped = true
            defer { stopWaiters.removeAll() }
            return stopWaiters
        }
        for waiter in waiters { waiter.resume() }
    }

    private func start(_ transfer: CurlTransfer) {
        if let error = transfer.cancellationError {
            transfer.finish(.failure(error))
            return
        }
        let easy: UnsafeMutableRawPointer
        do {
            easy = try transfer.makeEasyHandle()
        } catch {
            transfer.releaseEasyHandle()
            transfer.finish(.failure(error))
            return
        }
        let code = curl_multi_add_handle(multi, easy)
        guard code == CURLM_OK else {
            transfer.releaseEasyHandle()
            let message = String(cString: curl_multi_strerror(code))
            transfer.finish(.failure(.transport(url: transfer.urlString, code: Int(code.rawValue), message: message)))
            return
        }
        active[easy] = transfer
        if active.count > cachedConnections, cachedConnections < Self.maxCachedConnections {
            cachedConnections = min(active.count, Self.maxCachedConnections)
            _ = manifold_curl_multi_setopt_long(multi, CURLMOPT_MAXCONNECTS, CLong(cachedConnections))
        }
    }

    private func abort(_ transfer: CurlTransfer, with error: HTTPClientError) {
        guard let easy = transfer.easy, active.removeValue(forKey: easy) != nil else { return }
        curl_multi_remove_handle(multi, easy)
        transfer.releaseEasyHandle()
        transfer.finish(.failure(error))
    }

    private func collectFinished() {
        var left: Int32 = 0
        while let message = curl_multi_info_read(multi, &left) {
            guard message.pointee.msg == CURLMSG_DONE, let easy = message.pointee.easy_handle else { continue }
            let code = message.pointee.data.result
            guard let transfer = active.removeValue(forKey: easy) else { continue }
            curl_multi_remove_handle(multi, easy)
            let result = transfer.completion(code: code)
            transfer.releaseEasyHandle()
            transfer.finish(result)
        }
    }
}
