import Foundation

/// Looks at processes from the outside (Linux /proc) and waits for conditions with a deadline.
public enum ProcessProbe {
    /// Whether `pid` is a live (non-zombie) process.
    public static func alive(_ pid: Int32) -> Bool {
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8) else { return false }
        guard let close = stat.lastIndex(of: ")") else { return false }
        let state = stat[stat.index(close, offsetBy: 2)]
        return state != "Z" && state != "X"
    }

    /// The process ids written one per line to `file` (by a test's build script).
    public static func pids(in file: URL) -> [Int32] {
        ((try? String(contentsOf: file, encoding: .utf8)) ?? "").split(separator: "\n").compactMap { Int32($0) }
    }

    /// Checks `condition` every 100 ms until it holds or `timeout` passes; returns its last value.
    public static func waitUntil(
        _ timeout: Duration = .seconds(30), _ condition: () async throws -> Bool
    ) async rethrows -> Bool {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if try await condition() { return true }
            try? await Task.sleep(for: .milliseconds(100))
        }
        return try await condition()
    }
}
