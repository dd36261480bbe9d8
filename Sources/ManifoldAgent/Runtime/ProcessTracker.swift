import Foundation

/// Records each running builder's process group in `STATE/processes`, so an agent restarted after a crash (or a
/// SIGKILL) can kill builds its previous run left behind — and only those.
///
/// A process-group id is just a number: after a reboot, or once the group is gone, the same number can belong to
/// another program. Each record therefore holds the group leader's ``ProcessIdentity`` (the boot it ran in and
/// its start time), and a recorded group is killed only while a leader with that pid, that boot and that start
/// time still runs. Anything else is forgotten without a signal.
public struct ProcessTracker: Sendable {
    let directory: URL

    init(state: StateDirectory) {
        directory = state.url.appendingPathComponent("processes", isDirectory: true)
    }

    init(directory: URL) {
        self.directory = directory
    }

    /// What happened to one recorded group on start.
    enum Leftover: Sendable, Equatable {
        /// The recorded leader still runs: the group was killed.
        case killed(group: Int64)
        /// Not provably the agent's own (the reason says why): left alone.
        case spared(group: Int64, reason: String)
    }

    func file(for processGroup: Int64) -> URL {
        directory.appendingPathComponent("\(processGroup)")
    }

    /// Records a builder that leads `processGroup`, with its identity when the system can tell it.
    func started(_ processGroup: Int64) {
        try? FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let identity = ProcessTree.identity(ofLeader: processGroup)
        FileManager.default.createFile(atPath: file(for: processGroup).path, contents: identity?.recorded ?? Data())
    }

    func finished(_ processGroup: Int64) {
        try? FileManager.default.removeItem(at: file(for: processGroup))
    }

    /// Kills every recorded group whose leader is provably the one recorded, and forgets all records.
    @discardableResult
    func killLeftovers() -> [Leftover] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: directory.path)) ?? []
        var outcome: [Leftover] = []
        for name in names.sorted() {
            guard let group = Int64(name) else { continue }
            defer { finished(group) }
            let data = FileManager.default.contents(atPath: file(for: group).path) ?? Data()
            guard let recorded = ProcessIdentity(recorded: data) else {
                outcome.append(.spared(group: group, reason: "its record holds no boot id and start time"))
                continue
            }
            guard let current = ProcessTree.identity(ofLeader: group) else {
                outcome.append(.spared(group: group, reason: "its leader is no longer running"))
                continue
            }
            guard current.boot == recorded.boot else {
                outcome.append(.spared(group: group, reason: "it was recorded before the host rebooted"))
                continue
            }
            guard current.start == recorded.start else {
                outcome.append(
                    .spared(
                        group: group,
                        reason: "pid \(group) now belongs to a process started at \(current.start), not \(recorded.start)"))
                continue
            }
            ProcessTree.killLeftover(processGroup: group)
            outcome.append(.killed(group: group))
        }
        return outcome
    }
}

/// Which process a pid means: the boot it runs in and its start time in that boot. Two processes with equal
/// identities are the same process.
struct ProcessIdentity: Sendable, Hashable {
    /// The boot's identity (`/proc/sys/kernel/random/boot_id` on Linux).
    var boot: String
    /// The start time (clock ticks since boot, field 22 of `/proc/PID/stat` on Linux; the creation time on
    /// Windows).
    var start: UInt64

    /// The record's file content: `boot start`.
    var recorded: Data { Data("\(boot) \(start)\n".utf8) }

    init(boot: String, start: UInt64) {
        self.boot = boot
        self.start = start
    }

    init?(recorded data: Data) {
        let fields = String(decoding: data, as: UTF8.self).split(whereSeparator: \.isWhitespace)
        guard fields.count == 2, let start = UInt64(fields[1]) else { return nil }
        boot = String(fields[0])
        self.start = start
    }
}
