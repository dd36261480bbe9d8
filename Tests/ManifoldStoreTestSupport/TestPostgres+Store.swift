import Foundation
import Logging
import ManifoldStore
import ManifoldTestSupport

extension TestPostgres {
    /// The configuration of the test server's database, in the role's default schema.
    public func configuration(poolSize: Int = 8) throws -> PostgresConfiguration {
        var configuration = try PostgresConfiguration(url: url, password: password)
        configuration.poolSize = poolSize
        return configuration
    }

    /// A new, empty schema on the test server and a configuration whose `search_path` is that schema, so every
    /// store of a test run has tables of its own (a `CREATE SCHEMA` takes about a millisecond).
    public func freshSchema(poolSize: Int = 8) async throws -> PostgresConfiguration {
        let name = uniqueSchemaName()
        let admin = try await TestPostgresAdmin.shared.backend(for: self)
        do {
            try await admin.execute("CREATE SCHEMA \(name)")
        } catch {
            throw TestEnvironmentError("cannot create schema \(name) on the test PostgreSQL at \(url): \(error)\n\(logTail())")
        }
        var configuration = try self.configuration(poolSize: poolSize)
        configuration.schema = name
        return configuration
    }
}

/// One connection per test server that creates the schemas.
actor TestPostgresAdmin {
    static let shared = TestPostgresAdmin()
    private var admins: [String: PostgresBackend] = [:]

    func backend(for server: TestPostgres) async throws -> PostgresBackend {
        if let admin = admins[server.url] { return admin }
        let backend = try await PostgresBackend.connect(
            server.configuration(poolSize: 1), logger: Logger(label: "manifold.test.postgres-admin"))
        admins[server.url] = backend
        return backend
    }
}
