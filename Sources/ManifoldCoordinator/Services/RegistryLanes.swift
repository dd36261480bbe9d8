import Foundation
import Synchronization

/// Decides which registry work items may run now, so that one slow registry never holds up work on others.
///
/// An item names the registries it touches and its serial keys. It may start when no running item shares one of its
/// serial keys (work whose registry writes must stay in order, e.g. two builds moving the same tag, runs one at a
/// time) and every registry it touches has fewer than `perRegistry` items running. Items that must wait are simply
/// offered again on the service's next pass.
///
/// ```swift
/// let lanes = RegistryLanes(perRegistry: 4)
/// if lanes.start(item: "42", registries: ["ghcr.io"], serialKey: "ghcr.io/acme/app") {
///     group.addTask { defer { lanes.finish(item: "42") }; await work() }
/// }
/// ```
final class RegistryLanes: Sendable {
    let perRegistry: Int

    private struct Running {
        var registries: Set<String>
        var serialKeys: Set<String>
    }

    private struct State {
        var items: [String: Running] = [:]
        var perRegistry: [String: Int] = [:]
        var serialKeys: Set<String> = []
    }

    private let state = Mutex(State())

    init(perRegistry: Int) {
        self.perRegistry = max(1, perRegistry)
    }

    /// Reserves room for `item`; false (nothing reserved) when it is running already or must wait.
    func start(item: String, registries: Set<String>, serialKey: String) -> Bool {
        start(item: item, registries: registries, serialKeys: [serialKey])
    }

    /// Reserves room for `item`, which must not run beside any item sharing one of `serialKeys`; false (nothing
    /// reserved) when it is running already or must wait.
    func start(item: String, registries: Set<String>, serialKeys: Set<String>) -> Bool {
        state.withLock { state in
            guard state.items[item] == nil, state.serialKeys.isDisjoint(with: serialKeys),
                registries.allSatisfy({ state.perRegistry[$0, default: 0] < perRegistry })
            else { return false }
            state.items[item] = Running(registries: registries, serialKeys: serialKeys)
            state.serialKeys.formUnion(serialKeys)
            for registry in registries { state.perRegistry[registry, default: 0] += 1 }
            return true
        }
    }

    /// Releases what `start` reserved for `item`.
    func finish(item: String) {
        state.withLock { state in
            guard let running = state.items.removeValue(forKey: item) else { return }
            state.serialKeys.subtract(running.serialKeys)
            for registry in running.registries {
                state.perRegistry[registry, default: 1] -= 1
                if state.perRegistry[registry] == 0 { state.perRegistry[registry] = nil }
            }
        }
    }

    /// Whether `item` is running.
    func isRunning(_ item: String) -> Bool { state.withLock { $0.items[item] != nil } }

    /// How many items run on `registry` right now.
    func running(on registry: String) -> Int { state.withLock { $0.perRegistry[registry, default: 0] } }
}

/// Registry work that did not finish within its deadline; it is tried again later like any transient failure.
struct RegistryDeadlineExceeded: Error, CustomStringConvertible {
    var limit: Duration
    var registries: [String]

    var description: String {
        "the registry work did not finish within \(limit) (\(registries.joined(separator: ", ")) "
            + "slow or not answering); it is tried again later"
    }

    /// Runs `body`, cancelling it and throwing `RegistryDeadlineExceeded` when it takes longer than `limit`.
    static func run<T: Sendable>(
        _ limit: Duration, registries: Set<String>, _ body: @escaping @Sendable () async throws -> T
    ) async throws -> T {
        try await withThrowingTaskGroup(of: DeadlineOutcome<T>.self) { group in
            group.addTask { .finished(try await body()) }
            group.addTask {
                try await Task.sleep(for: limit)
                return .timedOut
            }
            defer { group.cancelAll() }
            switch try await group.next() {
            case .finished(let value):
                return value
            case .timedOut, nil:
                throw RegistryDeadlineExceeded(limit: limit, registries: registries.sorted())
            }
        }
    }
}

/// Which of the work and its deadline finished first.
private enum DeadlineOutcome<T: Sendable>: Sendable {
    case finished(T)
    case timedOut
}
