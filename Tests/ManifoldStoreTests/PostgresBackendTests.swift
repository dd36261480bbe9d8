import Foundation
import GRDB
import Logging
import ManifoldStoreTestSupport
import ManifoldTestSupport
import Synchronization
import Testing

@testable import ManifoldStore

/// The PostgreSQL backend against a real server (``TestPostgres``): each test gets a schema of its own.
@Suite struct PostgresBackendTests {
    static let logger = Logger(label: "manifold.test.postgres")

    /// A backend on a fresh schema, closed after `body`.
    func withBackend<T: Sendable>(
        poolSize: Int = 4, migrate: Bool = false, _ body: (PostgresBackend, PostgresConfiguration) async throws -> T
    ) async throws -> T {
        let configuration = try await TestPostgres.shared.freshSchema(poolSize: poolSize)
        let backend = try await PostgresBackend.connect(configuration, logger: Self.logger)
        do {
            if migrate { try await backend.migrate() }
            let result = try await body(backend, configuration)
            await backend.close()
            return result
        } catch {
            await backend.close()
            throw error
        }
    }

    func sqlError(_ body: () async throws -> Void) async -> SQLError? {
        do {
            try await body()
            return nil
        } catch let error as SQLError {
            return error
        } catch {
            Issue.record("expected an SQLError, got \(type(of: error)): \(error)")
            return nil
        }
    }

    // MARK: - Placeholders

    @Test func placeholdersBecomeNumberedOutsideLiteralsIdentifiersAndComments() {
        let cases: [(String, String, Int)] = [
            ("SELECT ?, ? FROM t WHERE a = ?", "SELECT $1, $2 FROM t WHERE a = $3", 3),
            ("SELECT 'a?b', ? ", "SELECT 'a?b', $1 ", 1),
            ("SELECT 'it''s ?', ?", "SELECT 'it''s ?', $1", 1),
            ("SELECT \"odd?name\" FROM t WHERE x = ?", "SELECT \"odd?name\" FROM t WHERE x = $1", 1),
            ("SELECT ? -- why?\n, ?", "SELECT $1 -- why?\n, $2", 2),
            ("SELECT /* a ? /* nested ? */ still ? */ ?", "SELECT /* a ? /* nested ? */ still ? */ $1", 1),
            ("SELECT $$ ? $$, ?", "SELECT $$ ? $$, $1", 1),
            ("SELECT $fn$ it's ? $fn$, ?", "SELECT $fn$ it's ? $fn$, $1", 1),
            ("SELECT E'\\' ?', ?", "SELECT E'\\' ?', $1", 1),
            (
                "SELECT \"offset\" FROM log_chunk WHERE epoch = ? AND \"offset\" >= ?",
                "SELECT \"offset\" FROM log_chunk WHERE epoch = $1 AND \"offset\" >= $2", 2
            ),
            ("SELECT price$1 FROM t", "SELECT price$1 FROM t", 0),
            ("SELECT 'unterminated ?", "SELECT 'unterminated ?", 0),
        ]
        for (sql, expected, count) in cases {
            let statement = StatementCache.translatePlaceholders(sql)
            #expect(statement.text == expected, "\(sql)")
            #expect(statement.placeholders == count, "\(sql)")
        }
    }

    @Test func aPreparedStatementCastsEachPlaceholderToItsArgumentsType() {
        let statement = StatementCache.translatePlaceholders("SELECT ?, 'a?' FROM t WHERE a = ? AND b IN (?, ?) AND c = ?")
        #expect(statement.segments == ["SELECT ", ", 'a?' FROM t WHERE a = ", " AND b IN (", ", ", ") AND c = ", ""])
        #expect(
            statement.typedText(for: [.integer(1), .real(2), .text("x"), .blob(Data([1])), .null])
                == "SELECT $1::bigint, 'a?' FROM t WHERE a = $2::double precision AND b IN ($3::text, $4::bytea) AND c = $5")
        #expect(StatementCache.translatePlaceholders("SELECT 1").typedText(for: []) == "SELECT 1")
        #expect(StatementCache.isSelect("SELECT 1") && StatementCache.isSelect("\n  SELECT x FROM t"))
        for other in [
            "UPDATE t SET a = 1", "WITH x AS (UPDATE t SET a = 1) SELECT 1", "SELECTED", "select 1", "INSERT INTO t SELECT 1",
        ] {
            #expect(!StatementCache.isSelect(other), "\(other)")
        }
        let writes: [(String, String?)] = [
            ("UPDATE t SET a = ? WHERE b = ?", "UPDATE"),
            ("\n INSERT INTO t (a) VALUES (?) ON CONFLICT (a) DO NOTHING", "INSERT"),
            ("WITH x AS (UPDATE t SET a = 1), y AS (SELECT (1)) INSERT INTO u (a) VALUES ((2))", "INSERT"),
            ("WITH x AS (SELECT 1)\nUPDATE t SET a = (SELECT 1 FROM x)", "UPDATE"),
            ("WITH x AS (UPDATE t SET a = 1) SELECT 1", nil),
            ("WITH x AS (SELECT ';') INSERT INTO t VALUES (1)", nil),
            ("INSERT INTO t (a) VALUES (1) RETURNING a", nil),
            ("UPDATE t SET a = 1 returning *", nil),
            ("DELETE FROM t WHERE a = 1", nil),
            ("SELECT 1", nil),
            ("UPDATE t SET a = 1; DROP TABLE t", nil),
        ]
        for (sql, command) in writes { #expect(StatementCache.countedWrite(sql) == command, "\(sql)") }
    }

    @Test func aStatementWithTheWrongNumberOfArgumentsIsRefusedBeforeItIsSent() async throws {
        try await withBackend { backend, _ in
            let error = await sqlError { _ = try await backend.read { db in try db.query("SELECT ?, ?", [1]) } }
            guard case .other(let message) = error else {
                Issue.record("expected .other, got \(String(describing: error))")
                return
            }
            #expect(message.contains("2 placeholders but 1 arguments"))
        }
    }

    // MARK: - Configuration

    @Test func urlParsesWithDefaultsAndParameters() throws {
        let local = try PostgresConfiguration(url: "postgres://manifold@127.0.0.1:6543/coord", password: "pw")
        #expect(local.host == "127.0.0.1")
        #expect(local.port == 6543)
        #expect(local.user == "manifold")
        #expect(local.database == "coord")
        #expect(local.password == "pw")
        #expect(local.sslMode == .disable)
        #expect(local.poolSize == 8)
        #expect(local.schema == nil)
        #expect(!local.description.contains("pw"))

        let remote = try PostgresConfiguration(url: "postgresql://svc%40corp@db.example.com/manifold")
        #expect(remote.user == "svc@corp")
        #expect(remote.port == 5432)
        #expect(remote.sslMode == .verifyFull)

        let tuned = try PostgresConfiguration(
            url: "postgres://m@[::1]:5433/db?sslmode=require&pool_size=3&search_path=replica_a&connect_timeout=5"
                + "&query_timeout=7&application_name=coord-1")
        #expect(tuned.host == "::1")
        #expect(tuned.address == "[::1]:5433")
        #expect(tuned.sslMode == .require)
        #expect(tuned.poolSize == 3)
        #expect(tuned.schema == "replica_a")
        #expect(tuned.connectTimeout == 5)
        #expect(tuned.queryTimeout == 7)
        #expect(tuned.applicationName == "coord-1")
        #expect(try PostgresConfiguration(url: tuned.url) == tuned)

        let defaultDatabase = try PostgresConfiguration(url: "postgres://alice@localhost")
        #expect(defaultDatabase.database == "alice")
    }

    @Test func urlWithAPasswordIsRefusedWithoutRepeatingIt() throws {
        for url in [
            "postgres://manifold:s3cret@127.0.0.1/db", "postgres://manifold:@127.0.0.1/db",
            "postgres://manifold:s3/cr@t@127.0.0.1/db", "postgres://manifold@127.0.0.1/db?password=s3cret",
        ] {
            do {
                _ = try PostgresConfiguration(url: url)
                Issue.record("accepted \(url)")
            } catch let error as PostgresConfigurationError {
                #expect(error.description.contains("password"), "\(url)")
                #expect(error.description.contains("MANIFOLD_DATABASE_PASSWORD"), "\(url)")
                #expect(!error.description.contains("s3cret") && !error.description.contains("cr@t"), "\(url)")
            }
        }
    }

    @Test(arguments: [
        ("mysql://m@h/db", "mysql://"),
        ("127.0.0.1:5432/db", "no scheme"),
        ("postgres://m@h:0/db", "port 0"),
        ("postgres://m@h:70000/db", "port 70000"),
        ("postgres://m@h:abc/db", "port abc"),
        ("postgres://h:5432/db", "names no user"),
        ("postgres://m@/db", "names no host"),
        ("postgres://m@h/db?sslmode=prefer", "sslmode=prefer"),
        ("postgres://m@h/db?pool_size=0", "pool_size=0"),
        ("postgres://m@h/db?search_path=Bad-Name", "search_path=Bad-Name"),
        ("postgres://m@h/db?sslmode=disable&sslrootcert=/etc/hosts", "sslmode=disable"),
        ("postgres://m@h/db?sslrootcert=/nonexistent/ca.pem", "/nonexistent/ca.pem"),
        ("postgres://m@h/db?ssl=true", "unknown parameter ssl"),
    ])
    func badURLsNameTheBadValue(url: String, expected: String) {
        do {
            _ = try PostgresConfiguration(url: url)
            Issue.record("accepted \(url)")
        } catch {
            #expect("\(error)".contains(expected), "\(url): \(error)")
        }
    }

    @Test func passwordComesFromAFileOrTheEnvironment() throws {
        let scratch = try ScratchDirectory(prefix: "manifold-pgpass")
        defer { scratch.remove() }
        let file = scratch.file("password")
        try Data("from-file\nignored\n".utf8).write(to: file)
        let environment = ["MANIFOLD_DATABASE_PASSWORD": "from-env"]
        #expect(try PostgresConfiguration.readPassword(file: file.path, environment: environment) == "from-file")
        #expect(try PostgresConfiguration.readPassword(file: nil, environment: environment) == "from-env")
        #expect(try PostgresConfiguration.readPassword(file: nil, environment: [:]) == nil)
        try Data().write(to: file)
        #expect(throws: PostgresConfigurationError.self) {
            try PostgresConfiguration.readPassword(file: file.path, environment: environment)
        }
        #expect(throws: PostgresConfigurationError.self) {
            try PostgresConfiguration.readPassword(file: scratch.file("missing").path, environment: environment)
        }
    }

    // MARK: - Values

    @Test func everyValueTypeRoundTrips() async throws {
        try await withBackend { backend, _ in
            let values: [(SQLValue, SQLValue, SQLValue, SQLValue)] = [
                (.integer(0), .real(0), .text(""), .blob(Data())),
                (.integer(Int64.max), .real(1e300), .text("pässwörd ✓ 'quoted' \"double\" ?"), .blob(Data([0, 1, 255, 0]))),
                (.integer(Int64.min), .real(-0.125), .text("line\nbreak\ttab"), .blob(Data(repeating: 0xAB, count: 100_000))),
                (.null, .null, .null, .null),
            ]
            try await backend.write { db in
                try db.execute(sql: "CREATE TABLE v (n BIGINT, r DOUBLE PRECISION, t TEXT, b BYTEA, k BIGINT)")
                for (index, row) in values.enumerated() {
                    try db.execute(
                        sql: "INSERT INTO v (n, r, t, b, k) VALUES (?, ?, ?, ?, ?)",
                        arguments: [row.0, row.1, row.2, row.3, index])
                }
            }
            let rows = try await backend.read { db in try SQLRow.fetchAll(db, sql: "SELECT n, r, t, b FROM v ORDER BY k") }
            #expect(rows.count == values.count)
            for (row, expected) in zip(rows, values) {
                #expect(row.columns == ["n", "r", "t", "b"])
                #expect(row.values == [expected.0, expected.1, expected.2, expected.3])
            }
        }
    }

    @Test func serverTypesDecodeToTheStoresStorageClasses() async throws {
        try await withBackend { backend, _ in
            let fetched = try await backend.read { db in
                try SQLRow.fetchOne(
                    db,
                    sql: """
                        SELECT 7::int2 AS a, 8::int4 AS b, true AS yes, false AS no, 1.5::float4 AS f,
                            (SELECT sum(x) FROM (VALUES (4::bigint), (5::bigint)) AS s(x)) AS total,
                            2.5::numeric AS half, 'v'::varchar AS v, 'n'::name AS n, 'c'::char(3) AS c,
                            NULL::text AS nothing, pg_sleep(0) AS void, 'a/b'::bytea AS bytes,
                            CamelCase.x AS "MixedCase"
                        FROM (SELECT 1 AS x) AS CamelCase
                        """)
            }
            let expected: [String: SQLValue] = [
                "a": .integer(7), "b": .integer(8), "yes": .integer(1), "no": .integer(0), "f": .real(1.5),
                "total": .integer(9), "half": .real(2.5), "v": .text("v"), "n": .text("n"), "c": .text("c  "),
                "nothing": .null, "void": .null, "bytes": .blob(Data("a/b".utf8)), "MixedCase": .integer(1),
            ]
            let row = try #require(fetched)
            for (column, value) in expected { #expect(row.value(column) == value, "\(column)") }
            #expect(row.columns.contains("MixedCase"))
            let unreadable = await sqlError { _ = try await backend.read { db in try db.query("SELECT now() AS moment", []) } }
            guard case .other(let message) = unreadable else {
                Issue.record("expected .other, got \(String(describing: unreadable))")
                return
            }
            #expect(message.contains("moment") && message.contains("cast it"))
        }
    }

    @Test func changesCountAndReturningFollowTheLastStatement() async throws {
        try await withBackend { backend, _ in
            try await backend.write { db in
                try db.execute(sql: "CREATE TABLE c (id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, g TEXT)")
                try db.execute(sql: "INSERT INTO c (g) VALUES (?), (?), (?)", arguments: ["a", "a", "b"])
                #expect(try db.changesCount == 3)
                try db.execute(sql: "UPDATE c SET g = 'z' WHERE g = ?", arguments: ["a"])
                #expect(try db.changesCount == 2)
                _ = try db.query("SELECT * FROM c", [])
                #expect(try db.changesCount == 2, "a SELECT leaves the count of the last change")
                try db.execute(sql: "UPDATE c SET g = 'y' WHERE g = 'none'")
                #expect(try db.changesCount == 0)
                let returned = try db.query("INSERT INTO c (g) VALUES ('r1'), ('r2') RETURNING id, g", [])
                #expect(try db.changesCount == 2)
                #expect(returned.map { $0["g"] as String } == ["r1", "r2"])
                #expect(returned.map { $0["id"] as Int64 } == [4, 5])
                try db.execute(sql: "DELETE FROM c WHERE id > ?", arguments: [1])
                #expect(try db.changesCount == 4)
            }
        }
    }

    // MARK: - Prepared statements

    /// The statements prepared on the test's one connection whose text contains `fragment`, with how often each ran.
    func prepared(_ backend: PostgresBackend, containing fragment: String) async throws -> [(statement: String, runs: Int)] {
        let rows = try await backend.read { db in
            try SQLRow.fetchAll(
                db,
                sql: "SELECT statement, (generic_plans + custom_plans)::bigint AS runs FROM pg_prepared_statements "
                    + "WHERE statement LIKE '%' || ? || '%' ORDER BY statement", arguments: [fragment])
        }
        return rows.map { ($0["statement"] as String, Int($0["runs"] as Int64)) }
    }

    /// A `SELECT` waited for is prepared at its second use on a connection, once per argument types, and reads what
    /// the unnamed statement read; a statement run once is not prepared.
    @Test func aSelectIsPreparedOncePerConnectionAndArgumentTypes() async throws {
        try await withBackend(poolSize: 1) { backend, _ in
            try await backend.write { db in
                try db.execute(sql: "CREATE TABLE v (k BIGINT, n BIGINT, r DOUBLE PRECISION, t TEXT, b BYTEA)")
                try db.execute(
                    sql: "INSERT INTO v VALUES (1, ?, ?, ?, ?), (2, NULL, NULL, NULL, NULL)",
                    arguments: [Int64.min, -0.125, "pässwörd ✓ 'q' ?", Data([0, 255, 0])])
            }
            let select = "SELECT n, r, t, b FROM v WHERE k = ? OR (k = 2 AND CAST(? AS text) IS NULL)"
            for _ in 0..<4 {
                let rows = try await backend.read { db in try SQLRow.fetchAll(db, sql: select, arguments: [1, "x"]) }
                #expect(
                    rows.map(\.values) == [
                        [.integer(Int64.min), .real(-0.125), .text("pässwörd ✓ 'q' ?"), .blob(Data([0, 255, 0]))]
                    ])
                try await backend.write { db in try db.execute(sql: "UPDATE v SET k = k WHERE k = ?", arguments: [1]) }
            }
            for _ in 0..<2 {
                let none = try await backend.read { db in
                    try SQLRow.fetchAll(db, sql: select, arguments: [SQLValue.null, "x"])
                }
                #expect(none.isEmpty)
                let nulls = try await backend.read { db in
                    try SQLRow.fetchAll(db, sql: select, arguments: [3, SQLValue.null])
                }
                #expect(nulls.map(\.values) == [[.null, .null, .null, .null]])
            }
            _ = try await backend.read { db in try SQLRow.fetchAll(db, sql: "SELECT k FROM v ORDER BY k", arguments: []) }

            let statements = try await prepared(backend, containing: "FROM v WHERE k").sorted { $0.statement < $1.statement }
            #expect(
                statements.map(\.statement) == [
                    "SELECT n, r, t, b FROM v WHERE k = $1 OR (k = 2 AND CAST($2::text AS text) IS NULL)",
                    "SELECT n, r, t, b FROM v WHERE k = $1::bigint OR (k = 2 AND CAST($2 AS text) IS NULL)",
                    "SELECT n, r, t, b FROM v WHERE k = $1::bigint OR (k = 2 AND CAST($2::text AS text) IS NULL)",
                ])
            #expect(statements.map(\.runs) == [1, 1, 3])
            let once = try await prepared(backend, containing: "ORDER BY k")
            #expect(once.isEmpty)
            let update = try await prepared(backend, containing: "UPDATE v").map(\.runs)
            #expect(update == [2], "prepared after the COMMIT of its second use")
        }
    }

    /// Creates table `name` (`id BIGINT PRIMARY KEY` and a text `column`) holding one row, `(1, firstRow)`.
    static func createTable(_ backend: PostgresBackend, _ name: String, column: String, firstRow: String) async throws {
        try await backend.write { db in
            try db.execute(sql: "CREATE TABLE \(name) (id BIGINT PRIMARY KEY, \(column) TEXT)")
            try db.execute(sql: "INSERT INTO \(name) VALUES (1, ?)", arguments: [firstRow])
        }
    }

    /// A prepared statement is prepared again after ``PreparedStatements/firstRenewal`` runs (then after
    /// ``PreparedStatements/renewalGrowth`` times as many), so PostgreSQL plans it on the tables as they are now, and
    /// the statement it replaces is deallocated after the next COMMIT.
    @Test func aPreparedStatementIsPreparedAgainAsItsTablesGrow() async throws {
        try await withBackend(poolSize: 1) { backend, _ in
            try await Self.createTable(backend, "grows", column: "note", firstRow: "first")
            let select = "SELECT note FROM grows WHERE id = ?"
            func run() async throws {
                let notes = try await backend.read { db in try String.fetchAll(db, sql: select, arguments: [1]) }
                #expect(notes == ["first"])
            }
            // The first run is unnamed, the second prepares it; it has then run `firstRenewal` times by name.
            for _ in 0..<(PreparedStatements.firstRenewal + 1) { try await run() }
            #expect(try await prepared(backend, containing: "FROM grows WHERE").map(\.runs) == [PreparedStatements.firstRenewal])

            // The table grows well past what the first plans were costed on, with no ANALYZE.
            try await backend.write { db in
                try db.execute(
                    sql: "INSERT INTO grows SELECT n, 'row ' || n FROM generate_series(2, 50000) AS n", arguments: [])
            }
            try await run()
            try await backend.write { db in try db.execute(sql: "UPDATE grows SET note = note WHERE id = ?", arguments: [2]) }
            // One statement for the text: the new one (one run), the old one deallocated after the write's COMMIT.
            #expect(try await prepared(backend, containing: "FROM grows WHERE").map(\.runs) == [1])
            // Its next renewal comes `renewalGrowth` times later.
            let next = PreparedStatements.firstRenewal * PreparedStatements.renewalGrowth
            for _ in 0..<(next - 1) { try await run() }
            #expect(try await prepared(backend, containing: "FROM grows WHERE").map(\.runs) == [next])
        }
    }

    /// An `INSERT`, `UPDATE` or `SELECT` whose rows nobody reads runs unnamed until the transaction of its second use
    /// commits, is prepared after that COMMIT, and from then on runs by name, a write with `RETURNING 1`, its rows
    /// counting what it changed. A write that cannot take `RETURNING` fails its preparation outside the transaction, which
    /// commits as before.
    @Test func aWriteIsPreparedAfterACommitAndCountsWhatItChanged() async throws {
        try await withBackend(poolSize: 1) { backend, _ in
            try await backend.write { db in
                try db.execute(sql: "CREATE TABLE c (id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, g TEXT)")
                try db.execute(sql: "CREATE TABLE sink (x BIGINT)")
                try db.execute(sql: "CREATE RULE nothing AS ON INSERT TO sink DO INSTEAD NOTHING")
            }
            for round in 0..<3 {
                try await backend.write { db in
                    try db.execute(sql: "INSERT INTO c (g) VALUES (?), (?), (?)", arguments: ["a", "a", "b"])
                    #expect(try db.changesCount == 3, "round \(round)")
                    try db.execute(sql: "UPDATE c SET g = ? WHERE g = ?", arguments: ["z", "a"])
                    #expect(try db.changesCount == 2, "round \(round)")
                    _ = try db.query("SELECT count(*) FROM c", [])
                    #expect(try db.changesCount == 2, "a SELECT leaves the count of the last change (round \(round))")
                    try db.execute(sql: "UPDATE c SET g = ? WHERE g = ?", arguments: ["y", "none"])
                    #expect(try db.changesCount == 0, "round \(round)")
                    try db.execute(
                        sql: "WITH touched AS (UPDATE c SET g = g WHERE id = ?)\nINSERT INTO c (g) VALUES (?)",
                        arguments: [1, "w"])
                    #expect(try db.changesCount == 1, "round \(round)")
                    try db.execute(sql: "DELETE FROM c WHERE g = ?", arguments: ["z"])
                    #expect(try db.changesCount == 2, "round \(round)")
                    try db.execute(sql: "INSERT INTO sink (x) VALUES (?)", arguments: [round])
                    try db.execute(sql: "SELECT pg_advisory_xact_lock(?)", arguments: [42])
                }
            }
            let count = try await backend.read { db in try Int.fetchOne(db, sql: "SELECT count(*) FROM c") }
            #expect(count == 6)
            let writes = try await prepared(backend, containing: "RETURNING 1").sorted { $0.statement < $1.statement }
            #expect(
                writes.map(\.statement) == [
                    "INSERT INTO c (g) VALUES ($1::text), ($2::text), ($3::text)\nRETURNING 1",
                    "UPDATE c SET g = $1::text WHERE g = $2::text\nRETURNING 1",
                    "WITH touched AS (UPDATE c SET g = g WHERE id = $1::bigint)\n"
                        + "INSERT INTO c (g) VALUES ($2::text)\nRETURNING 1",
                ])
            #expect(writes.map(\.runs) == [1, 4, 1])
            let deletes = try await prepared(backend, containing: "DELETE")
            #expect(deletes.isEmpty)
            let sinks = try await prepared(backend, containing: "sink")
            #expect(sinks.isEmpty)
            let locks = try await prepared(backend, containing: "pg_advisory_xact_lock").map(\.statement)
            #expect(locks == ["SELECT pg_advisory_xact_lock($1::bigint)"], "a SELECT sent ahead is prepared the same way")
        }
    }

    /// A statement prepared inside a transaction that rolled back stays prepared, and an error of a prepared
    /// statement is classified like any other, with its SQLSTATE and the statement.
    @Test func aPreparedStatementOutlivesARollbackAndItsErrorsNameTheStatement() async throws {
        struct Refused: Error {}
        try await withBackend(poolSize: 1) { backend, _ in
            let divide = "SELECT 10 / ? AS q"
            await #expect(throws: Refused.self) {
                try await backend.write { db in
                    #expect(try Int.fetchOne(db, sql: divide, arguments: [5]) == 2)
                    #expect(try Int.fetchOne(db, sql: divide, arguments: [4]) == 2, "prepared at its second use")
                    throw Refused()
                }
            }
            for _ in 0..<2 {
                let error = await sqlError {
                    _ = try await backend.read { db in try Int.fetchOne(db, sql: divide, arguments: [0]) }
                }
                guard case .other(let message) = error else {
                    Issue.record("expected .other, got \(String(describing: error))")
                    continue
                }
                #expect(message.contains("division by zero") && message.contains("22012") && message.contains(divide))
            }
            let five = try await backend.read { db in try Int.fetchOne(db, sql: divide, arguments: [2]) }
            #expect(five == 5)
            // One statement, run by the rolled-back transaction and the last read (a division by zero fails while a
            // plan for its argument is made, which counts no run).
            let runs = try await prepared(backend, containing: "SELECT 10 /").map(\.runs)
            #expect(runs == [2])
        }
    }

    /// A prepared statement gone from the server (a `DEALLOCATE ALL` on the connection) is prepared again on a new
    /// connection; a statement PostgreSQL refuses as unsupported (SQLSTATE 0A000) fails once, prepared or not.
    @Test func aStatementGoneFromTheServerIsPreparedAgainAndAnUnsupportedOneFailsOnce() async throws {
        try await withBackend(poolSize: 1) { backend, _ in
            let add = "SELECT 1 + ? AS x"
            for value in 0..<2 {
                #expect(try await backend.read { db in try Int.fetchOne(db, sql: add, arguments: [value]) } == 1 + value)
            }
            try await backend.write { db in try db.execute(sql: "DEALLOCATE ALL") }
            for value in 2..<4 {
                #expect(try await backend.read { db in try Int.fetchOne(db, sql: add, arguments: [value]) } == 1 + value)
            }

            try await backend.write { db in try db.execute(sql: "CREATE TABLE g (id BIGINT)") }
            for attempt in 0..<2 {
                let runs = Counter()
                let error = await sqlError {
                    try await backend.write { db in
                        _ = runs.increment()
                        _ = try db.query("SELECT id FROM g WHERE id = ? GROUP BY id FOR UPDATE", [1])
                    }
                }
                #expect(runs.value == 1, "attempt \(attempt)")
                #expect(error?.description.contains("0A000") == true, "attempt \(attempt): \(String(describing: error))")
            }
        }
    }

    /// A table changed under a prepared statement (another replica's migration adds a column): the transaction runs
    /// again on a new connection, which prepares the statement against the new table.
    @Test func aTableChangedUnderAPreparedStatementIsReadOnANewConnection() async throws {
        try await withBackend(poolSize: 1) { backend, configuration in
            try await Self.createTable(backend, "w", column: "a", firstRow: "one")
            let select = "SELECT * FROM w WHERE id = ?"
            let before = try await backend.read { db in try SQLRow.fetchOne(db, sql: select, arguments: [1]) }
            #expect(before?.columns == ["id", "a"])
            let other = try await PostgresBackend.connect(configuration, logger: Self.logger)
            try await other.write { db in try db.execute(sql: "ALTER TABLE w ADD COLUMN b TEXT DEFAULT 'new'") }
            await other.close()
            let after = try await backend.read { db in try SQLRow.fetchOne(db, sql: select, arguments: [1]) }
            #expect(after?.columns == ["id", "a", "b"])
            #expect(after?.values == [.integer(1), .text("one"), .text("new")])
        }
    }

    // MARK: - Errors

    @Test func constraintViolationsAreClassifiedAndOtherErrorsCarryStateAndStatement() async throws {
        try await withBackend(migrate: true) { backend, _ in
            try await backend.write { db in
                try db.execute(
                    sql: "INSERT INTO token (id, name, role, hash, createdAt) VALUES ('t1', 'a', 'admin', 'h1', 1)")
            }
            let violations = [
                "INSERT INTO token (id, name, role, hash, createdAt) VALUES ('t2', 'b', 'admin', 'h1', 1)",  // unique
                "INSERT INTO token (id, name, role, hash, createdAt) VALUES ('t3', 'b', 'root', 'h3', 1)",  // check
                "INSERT INTO token (id, name, role, hash, createdAt) VALUES ('t4', NULL, 'admin', 'h4', 1)",  // not null
                "INSERT INTO token (id, name, role, hash, createdAt, pool) VALUES ('t5', 'b', 'join', 'h5', 1, 'nope')",
            ]
            for sql in violations {
                let error = await sqlError { try await backend.write { db in try db.execute(sql: sql) } }
                guard case .constraint(let message) = error else {
                    Issue.record("\(sql): expected .constraint, got \(String(describing: error))")
                    continue
                }
                #expect(message.contains("SQLSTATE 23"), "\(message)")
            }
            let count = try await backend.read { db in try Int.fetchOne(db, sql: "SELECT count(*) FROM token") }
            #expect(count == 1, "nothing of a refused write is kept")

            let syntax = await sqlError { _ = try await backend.read { db in try db.query("SELEC 1", []) } }
            guard case .other(let message) = syntax else {
                Issue.record("expected .other, got \(String(describing: syntax))")
                return
            }
            #expect(message.contains("42601") && message.contains("SELEC 1") && message.contains("syntax error"))
        }
    }

    @Test func aDomainErrorRollsBackAndIsRethrownUnchanged() async throws {
        struct Refused: Error {}
        try await withBackend { backend, _ in
            try await backend.write { db in try db.execute(sql: "CREATE TABLE d (x BIGINT)") }
            await #expect(throws: Refused.self) {
                try await backend.write { db in
                    try db.execute(sql: "INSERT INTO d VALUES (1)")
                    throw Refused()
                }
            }
            // A body that swallows a failed statement cannot commit the rest: PostgreSQL aborted the transaction.
            let error = await sqlError {
                try await backend.write { db in
                    try db.execute(sql: "INSERT INTO d VALUES (2)")
                    _ = try? db.query("SELECT * FROM missing_table", [])
                }
            }
            #expect(error != nil)
            #expect(try await backend.read { db in try Int.fetchOne(db, sql: "SELECT count(*) FROM d") } == 0)
        }
    }

    /// Statements whose rows nobody reads are sent without waiting (several per round of the session thread); a
    /// failure among them is thrown inside the same transaction — by the next read, `changesCount` or the commit —
    /// as the statement that failed, nothing of the transaction is kept, and the connection stays in use.
    @Test func aFailureOfAStatementSentAheadIsThrownByTheTransactionAndNothingIsKept() async throws {
        struct Refused: Error {}
        try await withBackend(poolSize: 1) { backend, _ in
            try await backend.write { db in try db.execute(sql: "CREATE TABLE p (x BIGINT PRIMARY KEY)") }
            let pid = try await backend.read { db in try Int.fetchOne(db, sql: "SELECT pg_backend_pid()") }
            let duplicate = "INSERT INTO p VALUES (1)"
            let seenBy: [(String, @Sendable (SQLTransaction) throws -> Void)] = [
                ("a read", { db in _ = try db.query("SELECT count(*) FROM p", []) }),
                ("changesCount", { db in _ = try db.changesCount }),
                ("the commit", { _ in }),
            ]
            for (name, then) in seenBy {
                let error = await sqlError {
                    try await backend.write { db in
                        try db.execute(sql: "INSERT INTO p VALUES (2)")
                        try db.execute(sql: "INSERT INTO p VALUES (1)")
                        try db.execute(sql: duplicate)
                        try db.execute(sql: "INSERT INTO p VALUES (3)")
                        try then(db)
                    }
                }
                guard case .constraint(let message) = error else {
                    Issue.record("\(name): expected .constraint, got \(String(describing: error))")
                    continue
                }
                #expect(message.contains(duplicate), "\(name): \(message)")
                #expect(try await backend.read { db in try Int.fetchOne(db, sql: "SELECT count(*) FROM p") } == 0, "\(name)")
            }
            // A domain error thrown while sent statements are still unanswered rolls them back too.
            await #expect(throws: Refused.self) {
                try await backend.write { db in
                    try db.execute(sql: "INSERT INTO p VALUES (7)")
                    try db.execute(sql: "INSERT INTO p VALUES (7)")
                    throw Refused()
                }
            }
            // Sent statements that all succeed are committed, and changesCount follows the last of them.
            let changed = try await backend.write { db -> Int in
                for value in 10..<20 { try db.execute(sql: "INSERT INTO p VALUES (?)", arguments: [value]) }
                try db.execute(sql: "UPDATE p SET x = x + 100 WHERE x >= ?", arguments: [15])
                return try db.changesCount
            }
            #expect(changed == 5)
            #expect(
                try await backend.read { db in try Int.fetchAll(db, sql: "SELECT x FROM p ORDER BY x") }
                    == Array(10..<15) + Array(115..<120))
            // None of the failures above cost the connection: the one session is still on the same server process.
            #expect(try await backend.read { db in try Int.fetchOne(db, sql: "SELECT pg_backend_pid()") } == pid)
        }
    }

    // MARK: - Transactions

    @Test func concurrentReadModifyWriteLosesNoUpdate() async throws {
        let attempts = Counter()
        try await withBackend(poolSize: 4) { backend, _ in
            try await backend.write { db in
                try db.execute(sql: "CREATE TABLE counter (id BIGINT PRIMARY KEY, value BIGINT NOT NULL)")
                try db.execute(sql: "INSERT INTO counter VALUES (1, 0)")
            }
            try await withThrowingTaskGroup(of: Void.self) { group in
                for _ in 0..<4 {
                    group.addTask {
                        for _ in 0..<50 {
                            try await backend.write { db in
                                attempts.increment()
                                let value = try Int64.fetchOne(db, sql: "SELECT value FROM counter WHERE id = 1") ?? -1
                                try db.execute(sql: "UPDATE counter SET value = ? WHERE id = 1", arguments: [value + 1])
                            }
                        }
                    }
                }
                try await group.waitForAll()
            }
            let value = try await backend.read { db in try Int64.fetchOne(db, sql: "SELECT value FROM counter") }
            #expect(value == 200)
        }
        #expect(attempts.value >= 200)
    }

    /// Writes of two replicas run one at a time: each counts the rows and adds one only below the limit, pausing in
    /// between. Writes side by side at `READ COMMITTED` would both count 9 and both insert (write skew, no row in
    /// common to conflict on); one at a time, exactly `limit` rows exist at the end, and a write holding the lock
    /// keeps the other replica's writes waiting.
    @Test func writesOfTwoReplicasRunOneAtATimeSoNoneActsOnAStaleCount() async throws {
        let limit = 10
        var configuration = try await TestPostgres.shared.freshSchema(poolSize: 3)
        configuration.applicationName = "manifold-test-\(UInt32.random(in: 0...UInt32.max))"
        let first = try await PostgresBackend.connect(configuration, logger: Self.logger)
        let second = try await PostgresBackend.connect(configuration, logger: Self.logger)
        do {
            do {
                try await first.write { db in try db.execute(sql: "CREATE TABLE slot (owner TEXT NOT NULL)") }
                try await withThrowingTaskGroup(of: Void.self) { group in
                    for (name, backend) in [("first", first), ("second", second)] {
                        for lane in 0..<3 {
                            group.addTask {
                                for _ in 0..<6 {
                                    try await backend.write { db in
                                        let count = try Int.fetchOne(db, sql: "SELECT count(*) FROM slot") ?? 0
                                        try db.execute(sql: "SELECT pg_sleep(0.002)")
                                        if count < limit {
                                            try db.execute(sql: "INSERT INTO slot VALUES (?)", arguments: ["\(name)-\(lane)"])
                                        }
                                    }
                                }
                            }
                        }
                    }
                    try await group.waitForAll()
                }
                let owners = try await second.read { db in try String.fetchAll(db, sql: "SELECT owner FROM slot") }
                #expect(owners.count == limit, "\(owners)")
                #expect(Set(owners.map { $0.hasPrefix("first") }).count == 2, "both replicas wrote: \(owners)")

                // While one replica's write holds the lock, the other's waits for it, then sees its commit.
                let holding = Counter()
                let release = DispatchSemaphore(value: 0)
                let holder = Task {
                    try await first.write { db in
                        try db.execute(sql: "DELETE FROM slot")
                        _ = try db.changesCount  // waited for: the lock (sent with BEGIN) is held from here on
                        holding.increment()
                        _ = release.wait(timeout: .now() + 60)  // on the session's own thread
                    }
                }
                while holding.value == 0 { try await Task.sleep(for: .milliseconds(5)) }
                let waiter = Task {
                    try await second.write { db in
                        try Int.fetchOne(db, sql: "SELECT count(*) FROM slot") ?? -1
                    }
                }
                try await Task.sleep(for: .milliseconds(200))
                let applicationName = configuration.applicationName
                let activity = try await first.read { db in
                    try String.fetchAll(
                        db,
                        sql: "SELECT wait_event_type FROM pg_stat_activity WHERE datname = current_database() "
                            + "AND application_name = ? AND wait_event = 'advisory'",
                        arguments: [applicationName])
                }
                #expect(activity == ["Lock"], "the second replica's write waits for the writers' lock: \(activity)")
                release.signal()
                try await holder.value
                #expect(try await waiter.value == 0, "the waiting write saw the holder's commit")
            }
        } catch {
            await first.close()
            await second.close()
            throw error
        }
        await first.close()
        await second.close()
    }

    /// A write scoped to one build (``PostgresBackend/write(buildOfJob:_:)``) runs beside another replica's write for
    /// another build, waits for one of the same build and for an ordinary write, and keeps ordinary writes waiting.
    @Test func buildScopedWritesRunBesideOtherBuildsOnly() async throws {
        try await LockProbe.with { probe in
            let (first, second) = (probe.first, probe.second)
            let release = DispatchSemaphore(value: 0)
            let holder = try await probe.hold(release: release) { try await first.write(buildOfJob: "job-1", $0) }
            // Another build's write goes through while the holder keeps its build locked.
            try await probe.goesThrough("a write for another build") {
                try await second.write(buildOfJob: "job-3") { db in try db.execute(sql: "INSERT INTO mark VALUES ('beside')") }
            }
            // The same build's write (another of its jobs) and an ordinary write both wait.
            let sameBuild = Task { try await second.write(buildOfJob: "job-2", LockProbe.holderMarks) }
            #expect(try await probe.waitingForLocks(1) == 1, "the same build's write waits for the holder")
            let ordinary = Task { try await second.write(LockProbe.holderMarks) }
            #expect(try await probe.waitingForLocks(2) == 2, "an ordinary write waits for the holder")
            release.signal()
            try await holder.value
            #expect(try await sameBuild.value == 1, "the waiting write saw the holder's commit")
            #expect(try await ordinary.value == 1, "the waiting write saw the holder's commit")

            // An ordinary write keeps every build's scoped writes waiting.
            let releaseOrdinary = DispatchSemaphore(value: 0)
            let ordinaryHolder = try await probe.hold(release: releaseOrdinary) { try await first.write($0) }
            let scoped = Task { try await second.write(buildOfJob: "job-3", LockProbe.holderMarks) }
            #expect(try await probe.waitingForLocks(1) == 1, "a build's write waits for an ordinary write")
            releaseOrdinary.signal()
            try await ordinaryHolder.value
            #expect(try await scoped.value == 2, "the waiting write saw the holder's commit")
        }
    }

    /// A poll's write (a lease) runs beside other agents' polls and other builds' writes, one at a time per agent, and
    /// reads a build's rows only once that build's writes are done (``SQLTransaction/lockBuild(_:)``).
    @Test func pollWritesRunBesideOtherAgentsAndWaitForTheBuildsTheyLock() async throws {
        try await LockProbe.with { probe in
            let (first, second) = (probe.first, probe.second)
            let release = DispatchSemaphore(value: 0)
            let holder = try await probe.hold(release: release) { try await first.write(buildOfJob: "job-1", $0) }
            try await probe.goesThrough("a poll locking another build") {
                try await second.write(agent: "agent-x") { db in
                    try db.lockBuild("build-b")
                    try db.execute(sql: "INSERT INTO mark VALUES ('beside')")
                }
            }
            // A poll that locks the holder's build waits for it, and then reads what it committed.
            let locking = Task {
                try await second.write(agent: "agent-y") { db in
                    try db.lockBuild("build-a")
                    return try LockProbe.holderMarks(db)
                }
            }
            #expect(try await probe.waitingForLocks(1) == 1, "a poll locking the holder's build waits for it")
            release.signal()
            try await holder.value
            #expect(try await locking.value == 1, "the poll read the build's rows before its write committed")

            // A poll holding its agent (and a build it locked): the same agent's next poll, the build's writes and
            // an ordinary write wait; another agent's poll and another build's write do not.
            let releasePoll = DispatchSemaphore(value: 0)
            let poll = try await probe.hold(release: releasePoll) { body in
                try await first.write(agent: "agent-x") { db in
                    try db.lockBuild("build-b")
                    try body(db)
                }
            }
            try await probe.goesThrough("another agent's poll") {
                try await second.write(agent: "agent-z") { db in try db.execute(sql: "INSERT INTO mark VALUES ('z')") }
            }
            try await probe.goesThrough("a write for a build the poll did not lock") {
                try await second.write(buildOfJob: "job-1") { db in try db.execute(sql: "INSERT INTO mark VALUES ('a')") }
            }
            let sameAgent = Task { try await second.write(agent: "agent-x", LockProbe.holderMarks) }
            #expect(try await probe.waitingForLocks(1) == 1, "the same agent's next poll waits")
            let lockedBuild = Task { try await second.write(buildOfJob: "job-3", LockProbe.holderMarks) }
            #expect(try await probe.waitingForLocks(2) == 2, "a write of the build the poll locked waits")
            let ordinary = Task { try await second.write(LockProbe.holderMarks) }
            #expect(try await probe.waitingForLocks(3) == 3, "an ordinary write waits for the poll")
            releasePoll.signal()
            try await poll.value
            for waiting in [sameAgent, lockedBuild, ordinary] {
                #expect(try await waiting.value == 2, "a waiting write did not see the poll's commit")
            }
        }
    }

    /// A submission runs beside other tokens' submissions and builds' writes, one at a time per capped token.
    @Test func submissionsRunBesideOtherWritesOneAtATimePerToken() async throws {
        try await LockProbe.with { probe in
            let (first, second) = (probe.first, probe.second)
            let release = DispatchSemaphore(value: 0)
            let holder = try await probe.hold(release: release) { try await first.write(submittingFor: "tok-1", $0) }
            try await probe.goesThrough("another token's submission") {
                try await second.write(submittingFor: "tok-2") { db in try db.execute(sql: "INSERT INTO mark VALUES ('s')") }
            }
            try await probe.goesThrough("an uncapped submission") {
                try await second.write(submittingFor: nil) { db in try db.execute(sql: "INSERT INTO mark VALUES ('n')") }
            }
            try await probe.goesThrough("a build's write") {
                try await second.write(buildOfJob: "job-1") { db in try db.execute(sql: "INSERT INTO mark VALUES ('b')") }
            }
            let sameToken = Task { try await second.write(submittingFor: "tok-1", LockProbe.holderMarks) }
            #expect(try await probe.waitingForLocks(1) == 1, "the same token's submission waits")
            let ordinary = Task { try await second.write(LockProbe.holderMarks) }
            #expect(try await probe.waitingForLocks(2) == 2, "an ordinary write waits for a submission")
            release.signal()
            try await holder.value
            #expect(try await sameToken.value == 1, "the waiting submission saw the holder's commit")
            #expect(try await ordinary.value == 1, "the waiting write saw the holder's commit")
        }
    }

    /// A write that runs beside others and reaches rows its scope does not cover fails (and rolls back) instead of
    /// reading them unlocked: another build from a build's write, an image's tags from a submission.
    @Test func aLockOutsideAWritesScopeIsAnError() async throws {
        try await LockProbe.with { probe in
            let outside: [(String, @Sendable () async throws -> Void)] = [
                (
                    "a build's write locking another build",
                    { try await probe.first.write(buildOfJob: "job-1") { try $0.lockBuild("build-b") } }
                ),
                (
                    "a submission locking a build",
                    { try await probe.first.write(submittingFor: nil) { try $0.lockBuild("build-a") } }
                ),
                (
                    "a submission locking an image's tags",
                    { try await probe.first.write(submittingFor: "t") { try $0.lockImage("app") } }
                ),
            ]
            for (what, write) in outside {
                await #expect(throws: SQLError.self, "\(what) went through") { try await write() }
            }
            // In scope: a poll locks builds and then an image, a build's write an image; an ordinary write needs none.
            try await probe.first.write(agent: "agent-x") { db in
                try db.lockBuild("build-a")
                try db.lockImage("app")
            }
            try await probe.first.write(buildOfJob: "job-1") { db in try db.lockImage("app") }
            try await probe.first.write { db in
                try db.lockBuild("build-a")
                try db.lockImage("app")
            }
        }
    }

    @Test func aReadSeesOneSnapshotAndRefusesWrites() async throws {
        try await withBackend(poolSize: 2) { backend, _ in
            try await backend.write { db in
                try db.execute(sql: "CREATE TABLE s (x BIGINT)")
                try db.execute(sql: "INSERT INTO s VALUES (1)")
            }
            let firstReadDone = Counter()
            let writeDone = DispatchSemaphore(value: 0)
            let reader = Task {
                try await backend.read { db in
                    let before = try Int.fetchOne(db, sql: "SELECT count(*) FROM s")
                    firstReadDone.increment()
                    writeDone.wait()  // on the session's own thread
                    let after = try Int.fetchOne(db, sql: "SELECT count(*) FROM s")
                    return (before, after)
                }
            }
            while firstReadDone.value == 0 { try await Task.sleep(for: .milliseconds(5)) }
            try await backend.write { db in try db.execute(sql: "INSERT INTO s VALUES (2)") }
            writeDone.signal()
            let (before, after) = try await reader.value
            #expect(before == 1)
            #expect(after == 1, "the read transaction keeps its snapshot")
            #expect(try await backend.read { db in try Int.fetchOne(db, sql: "SELECT count(*) FROM s") } == 2)

            let refused = await sqlError { try await backend.read { db in try db.execute(sql: "INSERT INTO s VALUES (3)") } }
            guard case .storage(let message) = refused else {
                Issue.record("expected .storage (read-only transaction), got \(String(describing: refused))")
                return
            }
            #expect(message.contains("25006"))
        }
    }

    @Test func manyCallersShareAFewSessionThreadsWithoutBlockingThePool() async throws {
        try await withBackend(poolSize: 2) { backend, _ in
            let threadNames = Names()
            try await withThrowingTaskGroup(of: Void.self) { group in
                for index in 0..<64 {
                    group.addTask {
                        try await backend.read { db in
                            threadNames.insert(SessionThread.current != nil ? "session" : "other: \(Thread.current)")
                            // Holding the session a moment: with the work on the cooperative pool, 64 of these
                            // would starve it.
                            Thread.sleep(forTimeInterval: 0.005)
                            let echoed = try Int.fetchOne(db, sql: "SELECT ?::bigint", arguments: [index])
                            #expect(echoed == index)
                        }
                    }
                }
                try await group.waitForAll()
            }
            let names = threadNames.all
            #expect(names == ["session"], "the closures run on the sessions' own threads")
            #expect(SessionThread.current == nil, "a test task is not on a session thread")
            #expect(backend.openSessionCount <= 2)
        }
    }

    // MARK: - Migrations

    @Test func twoBackendsMigratingAtOnceApplyTheSchemaOnce() async throws {
        let configuration = try await TestPostgres.shared.freshSchema(poolSize: 2)
        let first = try await PostgresBackend.connect(configuration, logger: Self.logger)
        let second = try await PostgresBackend.connect(configuration, logger: Self.logger)
        async let a: Void = first.migrate()
        async let b: Void = second.migrate()
        _ = try await (a, b)
        try await first.migrate()
        let versions = try await second.read { db in
            try String.fetchAll(db, sql: "SELECT version FROM manifold_schema ORDER BY version")
        }
        // Text order puts v10 before v2: compare as sets, and once each.
        #expect(versions.count == SchemaVersions.known.count && Set(versions) == Set(SchemaVersions.known), "\(versions)")
        let pools = try await first.read { db in try String.fetchAll(db, sql: "SELECT name FROM pool") }
        #expect(pools == ["default"])
        await first.close()
        await second.close()
    }

    @Test func aNewerSchemaIsRefusedWithBothVersions() async throws {
        try await withBackend(migrate: true) { backend, configuration in
            try await backend.write { db in
                try db.execute(sql: "INSERT INTO manifold_schema (version, appliedAt) VALUES ('v99', 0)")
            }
            let other = try await PostgresBackend.connect(configuration, logger: Self.logger)
            let error = await sqlError { try await other.migrate() }
            await other.close()
            guard case .other(let message) = error else {
                Issue.record("expected .other, got \(String(describing: error))")
                return
            }
            #expect(
                message.contains("v99") && message.contains(SchemaVersions.known.last!) && message.contains("newer"),
                "\(message)")
        }
    }

    /// The PostgreSQL schema has the same tables, columns, NOT NULLs, column types and indexes as SQLite's after
    /// its migrations, and no column but log_chunk."offset" needs quoting.
    @Test func schemaMatchesSQLiteAndQuotesOnlyReservedOffset() async throws {
        let sqlite = try DatabaseQueue()
        try SQLiteSchema.migrator.migrate(sqlite)
        let typeNames = ["INTEGER": "bigint", "REAL": "double precision", "TEXT": "text", "BLOB": "bytea"]
        let (sqliteColumns, sqliteIndexes) = try await sqlite.read { db in
            var columns: Set<String> = []
            let tables = try String.fetchAll(
                db,
                sql:
                    "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' AND name != 'grdb_migrations'"
            )
            for table in tables {
                for row in try Row.fetchAll(
                    db, sql: "SELECT name, type, \"notnull\", pk FROM pragma_table_info(?)", arguments: [table])
                {
                    let type: String = row["type"]
                    // A primary key is NOT NULL in PostgreSQL; SQLite leaves that implicit.
                    let notNull = (row["notnull"] as Int) != 0 || (row["pk"] as Int) > 0
                    columns.insert("\(table).\((row["name"] as String).lowercased()) \(typeNames[type] ?? type) \(notNull)")
                }
            }
            let indexes = try String.fetchAll(
                db, sql: "SELECT name FROM sqlite_master WHERE type = 'index' AND name NOT LIKE 'sqlite_%'")
            return (columns, Set(indexes))
        }
        try await withBackend(migrate: true) { backend, configuration in
            let schema = try #require(configuration.schema)
            let (columns, indexes, reserved) = try await backend.read { db in
                let columns = try SQLRow.fetchAll(
                    db,
                    sql: """
                        SELECT table_name, column_name, data_type, is_nullable FROM information_schema.columns
                        WHERE table_schema = ? AND table_name != 'manifold_schema'
                        """, arguments: [schema]
                ).map { row in
                    "\(row["table_name"] as String).\(row["column_name"] as String) \(row["data_type"] as String) "
                        + "\((row["is_nullable"] as String) == "NO")"
                }
                let indexes = try String.fetchAll(
                    db,
                    sql: """
                        SELECT indexname FROM pg_indexes WHERE schemaname = ?
                        AND indexname NOT LIKE '%_pkey' AND indexname NOT LIKE '%_key'
                        """, arguments: [schema])
                let reserved = try String.fetchAll(
                    db,
                    sql: """
                        SELECT table_name || '.' || column_name FROM information_schema.columns c
                        JOIN pg_get_keywords() k ON k.word = c.column_name
                        WHERE c.table_schema = ? AND k.catcode IN ('R', 'T')
                        UNION
                        SELECT table_name FROM information_schema.tables t JOIN pg_get_keywords() k ON k.word = t.table_name
                        WHERE t.table_schema = ? AND k.catcode IN ('R', 'T')
                        """, arguments: [schema, schema])
                return (Set(columns), Set(indexes), reserved)
            }
            #expect(columns.subtracting(sqliteColumns).sorted() == [], "only in PostgreSQL")
            #expect(sqliteColumns.subtracting(columns).sorted() == [], "only in SQLite")
            #expect(indexes == sqliteIndexes)
            #expect(reserved == ["log_chunk.offset"])

            // The trigger: a build made final loses its secrets; one still running keeps them.
            try await backend.write { db in
                for id in ["b1", "b2"] {
                    try db.execute(
                        sql:
                            "INSERT INTO build (id, image, spec, state, createdAt, updatedAt) VALUES (?, 'i', '{}', 'running', 1, 1)",
                        arguments: [id])
                    try db.execute(
                        sql: "INSERT INTO build_secret (buildId, sealed) VALUES (?, ?)", arguments: [id, Data([1, 2])])
                }
                try db.execute(sql: "UPDATE build SET state = 'failed' WHERE id = 'b1'")
                try db.execute(sql: "UPDATE build SET state = 'verifying' WHERE id = 'b2'")
            }
            let left = try await backend.read { db in try String.fetchAll(db, sql: "SELECT buildId FROM build_secret") }
            #expect(left == ["b2"])
        }
    }

    // MARK: - Connections

    @Test func aTerminatedConnectionIsReplaced() async throws {
        var configuration = try await TestPostgres.shared.freshSchema(poolSize: 2)
        let applicationName = "m_\(try #require(configuration.schema))"
        configuration.applicationName = applicationName
        let backend = try await PostgresBackend.connect(configuration, logger: Self.logger)
        do {
            try await backend.write { db in try db.execute(sql: "CREATE TABLE r (x BIGINT)") }
            let admin = try await PostgresBackend.connect(try TestPostgres.shared.configuration(poolSize: 1), logger: Self.logger)
            let terminated = try await admin.read { db in
                try Bool.fetchAll(
                    db, sql: "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = ?",
                    arguments: [applicationName])
            }
            await admin.close()
            #expect(terminated == [true])
            // The next transactions reconnect (the schema is part of the configuration, so it is set again).
            for value in 0..<3 {
                try await backend.write { db in try db.execute(sql: "INSERT INTO r VALUES (?)", arguments: [value]) }
            }
            #expect(try await backend.read { db in try Int.fetchOne(db, sql: "SELECT count(*) FROM r") } == 3)

            // A connection lost in the middle of a transaction, before COMMIT: the transaction runs again on a new one.
            let runs = Counter()
            try await backend.write { db in
                if runs.increment() == 1 {
                    try db.execute(sql: "INSERT INTO r VALUES (100)")
                    try db.execute(sql: "SELECT pg_terminate_backend(pg_backend_pid())")
                }
                try db.execute(sql: "INSERT INTO r VALUES (200)")
            }
            #expect(runs.value == 2)
            let kept = try await backend.read { db in try Int.fetchAll(db, sql: "SELECT x FROM r WHERE x >= 100") }
            #expect(kept == [200])

            // The same in a prepared statement (a SELECT whose rows are waited for), whose errors PostgresNIO's
            // older API reports as another type.
            let reads = Counter()
            let count = try await backend.read { db in
                if reads.increment() == 1 { _ = try db.query("SELECT pg_terminate_backend(pg_backend_pid())", []) }
                return try Int.fetchOne(db, sql: "SELECT count(*) FROM r")
            }
            #expect(reads.value == 2)
            #expect(count == 4)
        } catch {
            await backend.close()
            throw error
        }
        await backend.close()
    }

    @Test func anUnreachableServerIsUnavailableAndNamed() async throws {
        let port = try Loopback.freePort()
        var configuration = try PostgresConfiguration(url: "postgres://manifold@127.0.0.1:\(port)/manifold")
        configuration.connectTimeout = 5
        let error = await sqlError { _ = try await PostgresBackend.connect(configuration, logger: Self.logger) }
        guard case .unavailable(let message) = error else {
            Issue.record("expected .unavailable, got \(String(describing: error))")
            return
        }
        #expect(message.contains("127.0.0.1:\(port)"), "\(message)")
    }

    @Test func aWrongPasswordIsRefusedNotUnavailable() async throws {
        var configuration = try await TestPostgres.shared.configuration(poolSize: 1)
        guard configuration.password != nil else { return }  // an external server with trust authentication
        configuration.password = "wrong"
        let error = await sqlError { _ = try await PostgresBackend.connect(configuration, logger: Self.logger) }
        guard case .other(let message) = error else {
            Issue.record("expected .other, got \(String(describing: error))")
            return
        }
        #expect(message.contains("28P01") && message.contains(configuration.address), "\(message)")
        #expect(!message.contains("wrong"))
    }

    @Test func aServerThatStopsAnsweringOrGoesAwayIsUnavailableAndNamed() async throws {
        let server = try await TestPostgres.local
        let proxy = try TCPFaultProxy.start(backendPort: try #require(server.port))
        defer { proxy.stop() }
        var configuration = try await server.freshSchema(poolSize: 1)
        configuration.port = proxy.port
        configuration.queryTimeout = 1
        configuration.connectTimeout = 1
        let backend = try await PostgresBackend.connect(configuration, logger: Self.logger)
        do {
            try await backend.write { db in try db.execute(sql: "CREATE TABLE u (x BIGINT)") }
            // Silence: no byte either way, on the open connection and on new ones.
            try proxy.setRules([TCPFaultRule(action: .blackhole)])
            let silent = await sqlError {
                try await backend.write { db in try db.execute(sql: "INSERT INTO u VALUES (1)") }
            }
            guard case .unavailable(let message) = silent else {
                Issue.record("expected .unavailable, got \(String(describing: silent))")
                throw CancellationError()
            }
            #expect(message.contains("127.0.0.1:\(proxy.port)"), "\(message)")
            // Answers again: the backend reconnects by itself. A busy machine may need more than the 1 s connect
            // timeout for one reconnection (TLS-less SCRAM through the proxy): each try stands on its own.
            try proxy.clearRules()
            var reconnected = false
            for _ in 0..<10 where !reconnected {
                do {
                    // Idempotent: a try that timed out after the server ran it must not insert twice.
                    try await backend.write { db in
                        try db.execute(sql: "INSERT INTO u SELECT 2 WHERE NOT EXISTS (SELECT 1 FROM u WHERE x = 2)")
                    }
                    reconnected = true
                } catch SQLError.unavailable {
                    continue
                }
            }
            #expect(reconnected, "the backend never reconnected after the proxy answered again")
            #expect(try await backend.read { db in try Int.fetchAll(db, sql: "SELECT x FROM u") } == [2])
            // Gone: connections are refused.
            proxy.stop()
            let gone = await sqlError { _ = try await backend.read { db in try db.query("SELECT 1", []) } }
            guard case .unavailable(let goneMessage) = gone else {
                Issue.record("expected .unavailable, got \(String(describing: gone))")
                throw CancellationError()
            }
            #expect(goneMessage.contains("127.0.0.1:\(proxy.port)"), "\(goneMessage)")
        } catch is CancellationError {
        } catch {
            await backend.close()
            throw error
        }
        await backend.close()
    }

    @Test func tlsIsVerifiedAgainstTheGivenCA() async throws {
        let server = try await TestPostgres.local
        let ca = try #require(server.caCertificate)
        let base = try server.configuration(poolSize: 1)
        func encrypted(_ configuration: PostgresConfiguration) async throws -> Bool? {
            let backend = try await PostgresBackend.connect(configuration, logger: Self.logger)
            let ssl = try await backend.read { db in
                try Bool.fetchOne(db, sql: "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
            }
            await backend.close()
            return ssl
        }
        #expect(try await encrypted(base) == false, "sslmode=disable is plain TCP")
        for host in ["127.0.0.1", "localhost"] {
            var verified = base
            verified.host = host
            verified.sslMode = .verifyFull
            verified.sslRootCertificate = ca.path
            #expect(try await encrypted(verified) == true, "verify-full with the server's CA, host \(host)")
        }
        var required = base
        required.sslMode = .require
        #expect(try await encrypted(required) == true)

        // A CA that did not issue the server's certificate, and the system's CAs, are refused.
        let scratch = try ScratchDirectory(prefix: "manifold-pg-otherca")
        defer { scratch.remove() }
        let otherCA = try TestCertificates.generate(in: scratch.url, commonName: "Another CA").caCertificate
        for (mode, root) in [
            (PostgresConfiguration.SSLMode.verifyFull, Optional(otherCA.path)), (.verifyFull, nil), (.verifyCA, otherCA.path),
        ] {
            var refused = base
            refused.sslMode = mode
            refused.sslRootCertificate = root
            let error = await sqlError { _ = try await encrypted(refused) }
            guard case .other(let message) = error else {
                Issue.record("\(mode.rawValue) with \(root ?? "system CAs"): expected .other, got \(String(describing: error))")
                continue
            }
            #expect(message.contains("TLS") && message.contains(base.address), "\(message)")
        }
    }

    // MARK: - Clock

    @Test func theClockIsTheServersClock() async throws {
        try await withBackend { backend, _ in
            let before = backend.clock()
            let server = try await backend.read { db in
                try Double.fetchOne(db, sql: "SELECT extract(epoch FROM clock_timestamp())::double precision")
            }
            let after = backend.clock()
            let margin = backend.clockUncertainty.seconds + 0.05
            let serverTime = try #require(server)
            #expect(serverTime >= before.timeIntervalSince1970 - margin)
            #expect(serverTime <= after.timeIntervalSince1970 + margin)
        }
    }

    @Test func aClockSampleSetsTheTimeAndAShorterRoundTripReplacesIt() async throws {
        let clock = ServerClock()
        let now = ContinuousClock.now
        clock.record(serverEpoch: 1_000_000, sent: now - .milliseconds(40), received: now)
        let read = clock.now().timeIntervalSince1970
        #expect(read >= 1_000_000.02 && read < 1_000_001, "the sample plus the time since, not the local clock")
        #expect(clock.uncertainty == .milliseconds(20))
        clock.record(serverEpoch: 2_000_000, sent: now - .milliseconds(100), received: now)
        #expect(clock.now().timeIntervalSince1970 < 1_000_001, "a worse sample within the interval is ignored")
        clock.record(serverEpoch: 3_000_000, sent: now - .milliseconds(2), received: now)
        #expect(clock.now().timeIntervalSince1970 >= 3_000_000)
        #expect(clock.uncertainty == .milliseconds(1))
    }
}

/// A counter the test's concurrent closures share.
/// Two backends on one fresh schema, whose transactions can be told apart in `pg_stat_activity`, for tests of which
/// writes wait for which. The schema has a `job` table (`job-1` and `job-2` of `build-a`, `job-3` of `build-b`) and a
/// `mark` table that writes insert into.
struct LockProbe {
    let first: PostgresBackend
    let second: PostgresBackend
    let applicationName: String

    static func with(_ body: (LockProbe) async throws -> Void) async throws {
        var configuration = try await TestPostgres.shared.freshSchema(poolSize: 4)
        configuration.applicationName = "manifold-test-\(UInt32.random(in: 0...UInt32.max))"
        let first = try await PostgresBackend.connect(configuration, logger: PostgresBackendTests.logger)
        let second = try await PostgresBackend.connect(configuration, logger: PostgresBackendTests.logger)
        do {
            try await first.write { db in
                try db.executeScript(
                    """
                    CREATE TABLE job (id TEXT PRIMARY KEY, buildId TEXT NOT NULL);
                    CREATE TABLE mark (name TEXT NOT NULL);
                    INSERT INTO job VALUES ('job-1', 'build-a'), ('job-2', 'build-a'), ('job-3', 'build-b')
                    """)
            }
            try await body(LockProbe(first: first, second: second, applicationName: configuration.applicationName))
        } catch {
            await first.close()
            await second.close()
            throw error
        }
        await first.close()
        await second.close()
    }

    /// How many `mark` rows holders inserted, as a write sees them.
    static let holderMarks: @Sendable (SQLTransaction) throws -> Int = { db in
        try Int.fetchOne(db, sql: "SELECT count(*) FROM mark WHERE name = 'holder'") ?? -1
    }

    /// Waits (up to 20 s) until `count` transactions of the two backends wait for an advisory lock.
    func waitingForLocks(_ count: Int) async throws -> Int {
        var waiting = -1
        for _ in 0..<400 {
            waiting =
                try await first.read { db in
                    try Int.fetchOne(
                        db,
                        sql: "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                            + "AND application_name = ? AND wait_event = 'advisory'",
                        arguments: [applicationName])
                } ?? -1
            if waiting == count { return waiting }
            try await Task.sleep(for: .milliseconds(50))
        }
        return waiting
    }

    /// Starts `write`, whose body inserts a holder's mark and then keeps its transaction (and locks) open until
    /// `release` is signalled; returns once the locks are held.
    func hold(
        release: DispatchSemaphore,
        _ write: @escaping @Sendable (@escaping @Sendable (SQLTransaction) throws -> Void) async throws -> Void
    ) async throws -> Task<Void, any Error> {
        let holding = Counter()
        let task = Task {
            try await write { db in
                try db.execute(sql: "INSERT INTO mark VALUES ('holder')")
                _ = try db.changesCount  // waited for: the locks sent before it are held from here on
                holding.increment()
                _ = release.wait(timeout: .now() + 60)  // on the session's own thread
            }
        }
        while holding.value == 0 { try await Task.sleep(for: .milliseconds(5)) }
        return task
    }

    /// Expects `write` to finish (within 20 s) while a holder keeps its locks.
    func goesThrough(_ what: String, _ write: @escaping @Sendable () async throws -> Void) async throws {
        let done = Counter()
        let task = Task {
            try await write()
            done.increment()
        }
        for _ in 0..<400 where done.value == 0 { try await Task.sleep(for: .milliseconds(50)) }
        #expect(done.value == 1, "\(what) waited for the holder")
        if done.value == 1 { try await task.value } else { task.cancel() }
    }
}

final class Counter: Sendable {
    private let atomic = Atomic<Int>(0)
    @discardableResult
    func increment() -> Int { atomic.add(1, ordering: .sequentiallyConsistent).newValue }
    var value: Int { atomic.load(ordering: .sequentiallyConsistent) }
}

/// The names of the threads the store's closures ran on.
final class Names: Sendable {
    private let names = Mutex<Set<String>>([])
    func insert(_ name: String) { _ = names.withLock { $0.insert(name) } }
    var all: Set<String> { names.withLock { $0 } }
}
