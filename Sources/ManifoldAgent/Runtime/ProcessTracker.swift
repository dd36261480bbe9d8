import Foundation

/// Records each running builder's process group in `STATE/processes`, so an agent restarted after a crash (or a
/// SIGKILL) can kill builds its previous run left behind.
public struct ProcessTracker: Sendable {
    let directory: URL

    init(state: StateDirectory) {
        directory = state.url.appendingPathComponent("processes", isDirectory: true)
    }

    func started(_ processGroup: Int64) {
        try? FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        FileManager.default.createFile(atPath: directory.appendingPathComponent("\(processGroup)").path, contents: nil)
    }

    func finished(_ processGroup: Int64) {
        try? FileManager.default.removeItem(at: directory.appendingPathComponent("\(processGroup)"))
    }

    /// Kills every process group a previous run recorded and forgets them; returns how many there were.
    @discardableResult
    func killLeftovers() -> Int {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: directory.path)) ?? []
        var count = 0
        for name in names {
            guard let group = Int64(name) else { continue }
            ProcessTree.killLeftover(processGroup: group)
            finished(group)
            count += 1
        }
        return count
    }
}
