/// A token scope for one repository, e.g. `repository:team/app:pull,push`.
public struct RepositoryScope: Sendable, Hashable, CustomStringConvertible {
    public var repository: String
    public var actions: Set<String>

    public init(repository: String, actions: Set<String>) {
        self.repository = repository
        self.actions = actions
    }

    public static func pull(_ repository: String) -> RepositoryScope { .init(repository: repository, actions: ["pull"]) }
    public static func push(_ repository: String) -> RepositoryScope { .init(repository: repository, actions: ["pull", "push"]) }

    public var includesPush: Bool { actions.contains("push") }

    /// Actions in a stable order, `pull` before `push` as registries print them.
    public var description: String {
        "repository:\(repository):\(actions.sorted().joined(separator: ","))"
    }

    /// Parses `repository:NAME:ACTIONS` (other resource types are not repository scopes).
    public init?(parsing string: String) {
        let parts = string.split(separator: ":", omittingEmptySubsequences: false)
        guard parts.count >= 3, parts[0] == "repository" else { return nil }
        // A repository name never contains ':', but a registry-qualified one could; keep the middle intact.
        repository = parts[1..<(parts.count - 1)].joined(separator: ":")
        actions = Set(parts[parts.count - 1].split(separator: ",").map(String.init))
    }

    /// Merges scopes for the same repository and orders them with push scopes first, then by name,
    /// so a token request asks for the most important grant first and the cache key is stable.
    public static func normalize(_ scopes: [RepositoryScope]) -> [RepositoryScope] {
        var merged: [String: Set<String>] = [:]
        for scope in scopes { merged[scope.repository, default: []].formUnion(scope.actions) }
        return merged.map { RepositoryScope(repository: $0.key, actions: $0.value) }.sorted { lhs, rhs in
            if lhs.includesPush != rhs.includesPush { return lhs.includesPush }
            return lhs.repository < rhs.repository
        }
    }
}
