import Foundation
import PostgresNIO

/// `LISTEN`/`NOTIFY` between the processes on one database (the coordinator's replica wake-ups).
extension PostgresBackend {
    /// What a listener hears.
    public enum Notification: Sendable, Equatable {
        /// The listening connection is (again) established; anything sent while it was not was lost.
        case listening
        case message(String)
    }

    /// Sends `payload` on `channel` to every listening connection. Payloads stay small: PostgreSQL allows under 8000
    /// bytes. One statement on its own (autocommit: delivered when it ends), outside the writers' lock — a
    /// notification changes no row, and taking the lock for it made every write wait behind the notifications of
    /// the writes before it (see deploy/bench/README.md).
    public func notify(channel: String, payload: String) async throws {
        guard payload.utf8.count < 8_000 else {
            throw SQLError.other("a notification payload of \(payload.utf8.count) bytes is over PostgreSQL's 8000")
        }
        try await sessions.withSession { session in
            try await session.execute("SELECT pg_notify($1, $2)", arguments: [.text(channel), .text(payload)])
        }
    }

    /// Listens on `channel` over a connection of its own (not one of the pool's), calling `receive` with
    /// ``Notification/listening`` once listening and then with every message, until the task is cancelled (returns)
    /// or the connection fails (throws ``SQLError/unavailable(_:)``). Callers reconnect by calling it again.
    public func listen(channel: String, _ receive: @escaping @Sendable (Notification) async -> Void) async throws {
        let connection: PostgresConnection
        do {
            connection = try await PostgresConnection.connect(
                on: shared.eventLoopGroup.next(), configuration: shared.connectionConfiguration,
                id: Int.random(in: 1_000_000...Int.max), logger: shared.logger)
        } catch {
            throw PostgresErrors.classifyConnect(error, configuration: configuration)
        }
        do {
            try await connection.listen(on: channel) { notifications in
                await receive(.listening)
                for try await notification in notifications {
                    await receive(.message(notification.payload))
                }
            }
            try? await connection.close()
            if Task.isCancelled { return }
            throw SQLError.unavailable("the listening connection to \(configuration.address) ended")
        } catch is CancellationError {
            try? await connection.close()
        } catch let error as SQLError {
            try? await connection.close()
            throw error
        } catch {
            try? await connection.close()
            if Task.isCancelled { return }
            throw SQLError.unavailable("the listening connection to \(configuration.address) failed: \(error)")
        }
    }
}
