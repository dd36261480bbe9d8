import ManifoldCore
import Synchronization

/// What sources pinned by digest resolved to, so a list assembled soon after its children were checked does not
/// read every child manifest and config from the registry again.
///
/// Only sources named by digest are kept: a manifest's bytes and the platform its config declares cannot change
/// under a digest, so an entry is never stale in content. An entry says the manifest *was* in that repository; a
/// list pushed from it still meets the registry's own check that its children exist, and the assembler's HEADs of
/// every child after the push.
///
/// Bounded by entries and by the manifest bytes they hold; the least recently used entry goes first.
///
/// ```swift
/// let cache = ResolvedSourceCache()
/// let verifier = ManifestListAssembler(registries: pool, resolvedSources: cache)   // plans a child: reads the registry
/// let publisher = ManifestListAssembler(registries: pool, resolvedSources: cache)  // plans the list: reads nothing again
/// ```
public final class ResolvedSourceCache: Sendable {
    /// The most entries kept.
    public let maxEntries: Int
    /// The most manifest bytes kept across all entries; an entry larger than this on its own is not kept.
    public let maxBytes: Int

    private struct Entry {
        var children: [AssembledChild]
        var bytes: Int
        var used: UInt64
    }

    private struct State {
        var entries: [AssemblySource: Entry] = [:]
        var bytes = 0
        var clock: UInt64 = 0
    }

    private let state = Mutex(State())

    /// The defaults cover 512 two-platform builds between their verification and their publication (an entry is
    /// needed for seconds) in a few MiB of the coordinator's memory.
    public init(maxEntries: Int = 1_024, maxBytes: Int = 4 << 20) {
        self.maxEntries = max(0, maxEntries)
        self.maxBytes = max(0, maxBytes)
    }

    /// The key of `source`, or nil when it cannot be cached (not pinned by digest).
    private static func key(_ source: AssemblySource) -> AssemblySource? {
        guard let digest = source.reference.digest else { return nil }
        return AssemblySource(reference: source.reference.withDigest(digest), expectedPlatform: source.expectedPlatform)
    }

    /// The children `source` resolved to, if it was resolved before and is still kept.
    public func children(of source: AssemblySource) -> [AssembledChild]? {
        guard let key = Self.key(source) else { return nil }
        return state.withLock { state in
            guard var entry = state.entries[key] else { return nil }
            state.clock += 1
            entry.used = state.clock
            state.entries[key] = entry
            return entry.children
        }
    }

    /// Keeps what `source` resolved to; a source not pinned by digest is ignored.
    public func remember(_ children: [AssembledChild], for source: AssemblySource) {
        guard let key = Self.key(source), !children.isEmpty else { return }
        let bytes = children.reduce(0) { $0 + $1.manifest.bytes.count }
        guard bytes <= maxBytes, maxEntries > 0 else { return }
        state.withLock { state in
            if let old = state.entries.removeValue(forKey: key) { state.bytes -= old.bytes }
            state.clock += 1
            state.entries[key] = Entry(children: children, bytes: bytes, used: state.clock)
            state.bytes += bytes
            while state.entries.count > maxEntries || state.bytes > maxBytes {
                guard let oldest = state.entries.min(by: { $0.value.used < $1.value.used }) else { break }
                state.entries.removeValue(forKey: oldest.key)
                state.bytes -= oldest.value.bytes
            }
        }
    }

    /// Drops what `source` resolved to, so the next plan reads the registry again (after a push that failed).
    public func forget(_ source: AssemblySource) {
        guard let key = Self.key(source) else { return }
        state.withLock { state in
            if let old = state.entries.removeValue(forKey: key) { state.bytes -= old.bytes }
        }
    }

    /// How many entries and manifest bytes are kept.
    public var statistics: (entries: Int, bytes: Int) {
        state.withLock { ($0.entries.count, $0.bytes) }
    }
}
