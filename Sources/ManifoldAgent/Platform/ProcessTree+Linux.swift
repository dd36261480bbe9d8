#if !os(Windows)
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

    /// Kills a process group recorded by a previous run of the agent. A pid stays reserved while a group of that
    /// id has members, so a group that still exists is the builder's.
    static func killLeftover(processGroup: Int64) {
        _ = killProcessGroup(pid_t(processGroup))
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
