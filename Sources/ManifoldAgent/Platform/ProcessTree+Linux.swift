#if !os(Windows)
import Foundation
import Subprocess

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// A builder and everything it starts, as one unit: on Linux a process group led by the builder.
enum ProcessTree {
    /// Starts the builder as the leader of a new process group (pgid = its pid).
    static func platformOptions() -> PlatformOptions {
        var options = PlatformOptions()
        options.processGroupID = 0
        return options
    }

    /// SIGTERM to the whole group.
    static func terminate<I, O, E>(_ execution: Execution<I, O, E>) {
        try? execution.send(signal: .terminate, toProcessGroup: true)
    }

    /// SIGKILL to the whole group.
    static func kill<I, O, E>(_ execution: Execution<I, O, E>) {
        try? execution.send(signal: .kill, toProcessGroup: true)
    }

    /// Kills a process group recorded by a previous run of the agent; ``ProcessTracker`` first checks that its
    /// leader is still the recorded process.
    static func killLeftover(processGroup: Int64) {
        _ = killProcessGroup(pid_t(processGroup))
    }

    /// The identity of the process `pid`: this boot's id and the process's start time (field 22 of
    /// `/proc/PID/stat`, in clock ticks since boot); nil when no such process runs.
    static func identity(ofLeader pid: Int64) -> ProcessIdentity? {
        guard let boot = bootID(), let start = startTime(of: pid) else { return nil }
        return ProcessIdentity(boot: boot, start: start)
    }

    static func bootID() -> String? {
        guard let text = try? String(contentsOfFile: "/proc/sys/kernel/random/boot_id", encoding: .utf8) else { return nil }
        let id = text.trimmingCharacters(in: .whitespacesAndNewlines)
        return id.isEmpty ? nil : id
    }

    /// Field 22 of `/proc/PID/stat`. The command name (field 2) may hold spaces and parentheses, so fields are
    /// counted from the last `)`.
    static func startTime(of pid: Int64) -> UInt64? {
        guard pid > 0, let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
            let close = stat.lastIndex(of: ")")
        else { return nil }
        // After the name: field 3 (state) onwards; field 22 is the 20th of them.
        let fields = stat[stat.index(after: close)...].split(separator: " ")
        guard fields.count >= 20 else { return nil }
        return UInt64(fields[19])
    }

    static func groupID(_ identifier: ProcessIdentifier) -> Int64 { Int64(identifier.value) }

    /// Kills whatever is left of the group after the leader exited (children that outlived it).
    static func reap(_ identifier: ProcessIdentifier) {
        _ = killProcessGroup(identifier.value)
    }
}
#endif

#if !os(Windows)
/// `kill(-pgid, SIGKILL)`, outside the enum so the C function is not shadowed by `ProcessTree.kill`.
private func killProcessGroup(_ leader: pid_t) -> Int32 {
    kill(-leader, SIGKILL)
}
#endif
