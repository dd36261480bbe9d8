import Dispatch
import Foundation
import ManifoldArchive

/// The bytes libFuzzer hands to a target, copied into `Data`.
public func fuzzInput(_ bytes: UnsafePointer<UInt8>?, _ count: Int) -> Data {
    guard let bytes, count > 0 else { return Data() }
    return Data(bytes: bytes, count: count)
}

/// Stops the process (which libFuzzer reports as a crash and saves the input for) when a property the parser
/// promises does not hold; returning normally is what every input must do otherwise.
public func fuzzExpect(_ condition: Bool, _ message: @autoclosure () -> String) {
    if !condition { fatalError("fuzz property violated: \(message())") }
}

/// Reads from bytes in memory, in pieces no larger than the reader asked for.
public final class MemorySource: ByteSource {
    private let data: Data
    private var offset: Int

    public init(_ data: Data) {
        self.data = data
        offset = data.startIndex
    }

    public func read(upToCount count: Int) throws -> Data {
        let end = min(data.endIndex, offset + max(0, count))
        defer { offset = end }
        return Data(data[offset..<end])  // a fresh Data, indexed from 0 as FileSource returns it
    }
}

/// Collects everything written to it in memory.
public final class MemorySink: ByteSink {
    public private(set) var data = Data()
    private var finished = false

    public init() {}

    public func write(_ chunk: Data) throws {
        fuzzExpect(!finished, "a write after finish()")
        data.append(chunk)
    }

    public func finish() throws { finished = true }
}

/// Runs `body` on the concurrency pool and waits for it: libFuzzer calls the entry point synchronously, and a few
/// parsers are only reachable through async API.
public func runBlocking<T: Sendable>(_ body: @escaping @Sendable () async -> T) -> T {
    let result = ResultBox<T>()
    let done = DispatchSemaphore(value: 0)
    Task {
        result.set(await body())
        done.signal()
    }
    done.wait()
    return result.get()
}

/// Hands one value from the task `runBlocking` starts to the thread waiting for it. The lock orders the write
/// before the read, so sharing it across that boundary is safe.
private final class ResultBox<T>: @unchecked Sendable {
    private let lock = NSLock()
    private var value: T?

    func set(_ newValue: T) { lock.withLock { value = newValue } }
    func get() -> T { lock.withLock { value! } }
}
