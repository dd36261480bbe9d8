import Foundation

extension TestPostgres {
    /// Runs `sql` with `psql` against `url` (default: the server's test database), the password passed in the
    /// environment, never on the command line; returns the rows, columns separated by `|`. Fails with psql's error.
    @discardableResult
    public func psql(_ sql: String, url: String? = nil) throws -> [String] {
        var environment = ["PGCONNECT_TIMEOUT": "10"]
        if let password { environment["PGPASSWORD"] = password }
        // psql takes libpq's URL; the store's own parameters (search_path) become the session's search path.
        var components = URLComponents(string: url ?? self.url)!
        var items = components.queryItems ?? []
        var prefix = ""
        if let path = items.first(where: { $0.name == "search_path" })?.value {
            prefix = "SET search_path TO \(path); "
            items.removeAll { $0.name == "search_path" }
        }
        components.queryItems = items.isEmpty ? nil : items
        let result = try runCommand(
            "psql", [components.string!, "-v", "ON_ERROR_STOP=1", "-A", "-t", "-q", "-c", prefix + sql],
            environment: environment)
        guard result.status == 0 else {
            throw TestEnvironmentError("psql failed (\(result.status)) running \(sql): \(result.stderr)")
        }
        return result.stdout.split(separator: "\n").map(String.init)
    }
}
