import Foundation

extension Store {
    /// Rewrites the one row of the `health` table: a write as small as writes get. Readiness calls it while the
    /// last write failed, so it turns ready again once space is back even if no client writes. A failure is
    /// recorded in ``writeHealth`` and thrown as ``StoreError/storageUnavailable(_:)``, like any write.
    public func probeWrite() async throws {
        let at = Store.timestamp(now())
        try await write { db in
            try db.execute(
                sql:
                    "INSERT INTO health (id, checkedAt) VALUES (1, ?) ON CONFLICT (id) DO UPDATE SET checkedAt = excluded.checkedAt",
                arguments: [at])
        }
    }

    /// Records a storage failure outside the database (a context file that could not be written), so readiness
    /// reports it until a write succeeds again.
    public func recordStorageFailure(_ reason: String) {
        writeHealth.failed(at: now(), reason: reason)
    }
}
