import Foundation

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#elseif canImport(ucrt)
import ucrt
#endif

/// The dedicated thread of one `CurlEventLoop`, which can be waited for to its very end.
///
/// On glibc it is a joinable pthread named `manifold-curl`, and `join()` returns once the thread is gone, its
/// thread-local destructors included: OpenSSL frees a thread's own state in one of those. Elsewhere it is a
/// Foundation thread and `join()` waits until its body has returned.
final class LoopThread: @unchecked Sendable {
    // Safe to share: every stored property is set in `init` and never changed; `join()` is called at most once per
    // thread, by `LoopThreadRegistry`, which hands each ended thread to exactly one joiner.
    static let name = "manifold-curl"

    #if canImport(Glibc)
    private let handle: pthread_t

    init(_ body: @escaping @Sendable () -> Void) {
        let context = Unmanaged.passRetained(Body(body)).toOpaque()
        var handle = pthread_t()
        let result = pthread_create(
            &handle, nil,
            { context in
                let body = Unmanaged<Body>.fromOpaque(context!).takeRetainedValue()
                LoopThread.nameCurrentThread()
                body.run()
                return nil
            }, context)
        guard result == 0 else { fatalError("pthread_create failed for the HTTP client's thread: error \(result)") }
        self.handle = handle
    }

    /// Waits until the thread has exited.
    func join() {
        _ = pthread_join(handle, nil)
    }

    /// Names the calling thread in `/proc` (what `ps -L`, gdb and crash reports show); `pthread_setname_np` needs
    /// `_GNU_SOURCE`, which Swift's Glibc module is not built with.
    private static func nameCurrentThread() {
        let descriptor = open("/proc/thread-self/comm", O_WRONLY)
        guard descriptor >= 0 else { return }
        _ = name.withCString { write(descriptor, $0, strlen($0)) }
        close(descriptor)
    }

    /// Whether the caller runs on this thread.
    var isCurrent: Bool { pthread_equal(pthread_self(), handle) != 0 }
    #else
    private let thread: Thread
    private let finished: DispatchSemaphore

    init(_ body: @escaping @Sendable () -> Void) {
        let finished = DispatchSemaphore(value: 0)
        let thread = Thread {
            body()
            finished.signal()
        }
        thread.name = LoopThread.name
        self.thread = thread
        self.finished = finished
        thread.start()
    }

    /// Waits until the thread's body has returned.
    func join() {
        finished.wait()
    }

    /// Whether the caller runs on this thread.
    var isCurrent: Bool { Thread.current === thread }
    #endif

    private final class Body {
        let run: @Sendable () -> Void
        init(_ run: @escaping @Sendable () -> Void) { self.run = run }
    }
}

/// Every client thread of the process, so that the process's exit stops them and waits for them first.
///
/// OpenSSL, libcurl's TLS library on Linux, frees its global state in an `atexit` handler, the lock among it that a
/// thread takes while exiting to free its own OpenSSL state. A client thread still inside libcurl, or still exiting,
/// when that handler runs uses freed memory: a benchmark that released 2,000 clients and returned from `main`
/// crashed with "corrupted double-linked list". `stopAllBeforeExit()` is registered with `atexit` right after
/// libcurl's initialisation, after OpenSSL's handler, and handlers run in reverse order: it shuts every loop down and
/// joins every thread before OpenSSL cleans up. A loop created while the process exits never starts a thread.
///
/// A thread that ends in normal operation is joined by the next one that ends (or at exit), so at most one ended
/// thread waits unjoined at a time.
final class LoopThreadRegistry: @unchecked Sendable {
    // Safe to share: every stored property is guarded by `condition`.
    static let shared = LoopThreadRegistry()

    /// How long the process's exit waits for the loops to stop; a loop stops within milliseconds of being asked.
    static let exitWait: TimeInterval = 5

    private let condition = NSCondition()
    private var running: [ObjectIdentifier: (loop: CurlEventLoop, thread: LoopThread)] = [:]
    private var unjoined: [LoopThread] = []
    private var exiting = false

    /// Starts the loop's thread, which runs `run` and then hands itself over to be joined; false when the process is
    /// exiting (no thread is started then).
    func start(_ loop: CurlEventLoop, run: @escaping @Sendable () -> Void) -> Bool {
        condition.lock()
        defer { condition.unlock() }
        guard !exiting else { return false }
        // The thread cannot reach `ended` before its entry exists: that needs `condition`, held here.
        let thread = LoopThread { [self] in
            run()
            ended(loop)
        }
        running[ObjectIdentifier(loop)] = (loop, thread)
        return true
    }

    /// Called last on a loop's own thread: records it as ended and joins the threads that ended before it.
    private func ended(_ loop: CurlEventLoop) {
        condition.lock()
        let earlier = unjoined
        unjoined = running.removeValue(forKey: ObjectIdentifier(loop)).map { [$0.thread] } ?? []
        condition.broadcast()
        condition.unlock()
        for thread in earlier { thread.join() }
    }

    /// Shuts every loop down and joins every client thread, waiting at most `exitWait` for loops to stop.
    /// A loop whose thread calls `exit` itself is left alone.
    func stopAllBeforeExit() {
        condition.lock()
        exiting = true
        let loops = running.values.filter { !$0.thread.isCurrent }.map(\.loop)
        condition.unlock()
        for loop in loops { loop.shutdown() }

        let deadline = Date(timeIntervalSinceNow: Self.exitWait)
        condition.lock()
        while running.values.contains(where: { !$0.thread.isCurrent }), condition.wait(until: deadline) {}
        let ended = unjoined.filter { !$0.isCurrent }
        unjoined.removeAll { !$0.isCurrent }
        condition.unlock()
        for thread in ended { thread.join() }
    }
}
