#if os(Windows)
import Subprocess
import WinSDK

/// A builder and everything it starts, as one unit: on Windows the Job Object swift-subprocess creates for every
/// child, plus a new console process group so Ctrl+Break reaches the whole tree.
enum ProcessTree {
    static func platformOptions() -> PlatformOptions {
        var options = PlatformOptions()
        options.createProcessGroup = true
        return options
    }

    /// Ctrl+Break to the builder's process group: the console equivalent of SIGTERM.
    static func terminate<I, O, E>(_ execution: Execution<I, O, E>) {
        _ = GenerateConsoleCtrlEvent(DWORD(CTRL_BREAK_EVENT), execution.processIdentifier.value)
    }

    /// Terminates every process in the builder's Job Object.
    static func kill<I, O, E>(_ execution: Execution<I, O, E>) {
        try? execution.terminate(withExitCode: 1, toProcessGroup: true)
    }

    /// Processes of a crashed agent's builds: the Job Object was the crashed agent's, so nothing is left to hold
    /// them by; terminate the recorded builder process itself (``ProcessTracker`` first checks that the pid still
    /// names the recorded process).
    static func killLeftover(processGroup: Int64) {
        guard let process = OpenProcess(DWORD(PROCESS_TERMINATE), false, DWORD(processGroup)) else { return }
        TerminateProcess(process, 1)
        CloseHandle(process)
    }

    /// The identity of process `pid`: its creation time (a FILETIME, 100 ns since 1601, which no process of
    /// another boot can share), with a fixed boot field since the creation time already tells boots apart.
    static func identity(ofLeader pid: Int64) -> ProcessIdentity? {
        guard let process = OpenProcess(DWORD(PROCESS_QUERY_LIMITED_INFORMATION), false, DWORD(pid)) else { return nil }
        defer { CloseHandle(process) }
        // A handle opens for a process that has exited while others still hold handles to it; only a running
        // one (exit code STILL_ACTIVE, 259) counts.
        var exitCode: DWORD = 0
        guard GetExitCodeProcess(process, &exitCode), exitCode == 259 else { return nil }
        var creation = FILETIME()
        var exit = FILETIME()
        var kernel = FILETIME()
        var user = FILETIME()
        guard GetProcessTimes(process, &creation, &exit, &kernel, &user) else { return nil }
        let start = UInt64(creation.dwHighDateTime) << 32 | UInt64(creation.dwLowDateTime)
        return ProcessIdentity(boot: "windows", start: start)
    }

    static func groupID(_ identifier: ProcessIdentifier) -> Int64 { Int64(identifier.value) }

    /// Nothing to do: the Job Object is terminated by `kill`, and closing it with the execution ends its members.
    static func reap(_ identifier: ProcessIdentifier) {}
}
#endif
