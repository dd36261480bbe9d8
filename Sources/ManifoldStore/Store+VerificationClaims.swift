import Foundation
import ManifoldCore

/// A replica's claim on checking one report in the registry, taken before the check touches the registry.
///
/// Every claim of a report bumps its `token`; the claim's writes (the child tag's claim, the recorded outcome) are
/// fenced by it, so a replica whose claim ran out and was taken over by another records nothing.
public struct VerificationClaim: Sendable, Hashable {
    public var jobId: String
    public var epoch: Int64
    /// The report's claim counter when this claim was taken.
    public var token: Int64
    /// When the claim runs out unless renewed (the store's clock).
    public var until: Date
}

extension Store {
    /// Claims the report of attempt `epoch` for this replica's check, for ``StoreSettings/verificationClaimTTL``.
    /// Answers nil when the report no longer awaits a check or another replica holds a claim on it that has not run
    /// out. This replica's own earlier claim (a retry, or the embedded coordinator after a restart) is taken again.
    public func claimVerification(jobId: String, epoch: Int64) async throws -> VerificationClaim? {
        let at = now()
        let until = at.addingTimeInterval(settings.verificationClaimTTL)
        return try await write(.buildOfJob(jobId)) { db -> VerificationClaim? in
            // One statement: of two replicas claiming at once, the second finds the first's claim.
            let token = try Int64.fetchOne(
                db,
                sql: """
                    UPDATE attempt SET verifyClaimedBy = ?, verifyClaimedUntil = ?, verifyClaimToken = verifyClaimToken + 1
                    WHERE epoch = ? AND jobId = ? AND state = 'verifying'
                        AND (verifyClaimedBy IS NULL OR verifyClaimedBy = ? OR verifyClaimedUntil <= ?)
                    RETURNING verifyClaimToken
                    """,
                arguments: [replica, Store.timestamp(until), epoch, jobId, replica, Store.timestamp(at)])
            return token.map { VerificationClaim(jobId: jobId, epoch: epoch, token: $0, until: until) }
        }
    }

    /// Extends `claim` by another ``StoreSettings/verificationClaimTTL`` from now. Answers nil when it was lost:
    /// another replica took it over (after it ran out) or the report no longer awaits a check.
    public func renewVerificationClaim(_ claim: VerificationClaim) async throws -> VerificationClaim? {
        let until = now().addingTimeInterval(settings.verificationClaimTTL)
        return try await write(.buildOfJob(claim.jobId)) { db -> VerificationClaim? in
            try db.execute(
                sql: """
                    UPDATE attempt SET verifyClaimedUntil = ?
                    WHERE epoch = ? AND jobId = ? AND state = 'verifying' AND verifyClaimedBy = ? AND verifyClaimToken = ?
                    """, arguments: [Store.timestamp(until), claim.epoch, claim.jobId, replica, claim.token])
            guard try db.changesCount > 0 else { return nil }
            var renewed = claim
            renewed.until = until
            return renewed
        }
    }

    /// Gives `claim` up (this replica stops, e.g. shutting down), so another replica checks the report at once
    /// instead of after the claim runs out. A claim taken over meanwhile is left alone.
    public func releaseVerificationClaim(_ claim: VerificationClaim) async throws {
        try await write(.buildOfJob(claim.jobId)) { db in
            try db.execute(
                sql: """
                    UPDATE attempt SET verifyClaimedBy = NULL, verifyClaimedUntil = NULL
                    WHERE epoch = ? AND jobId = ? AND verifyClaimedBy = ? AND verifyClaimToken = ?
                    """, arguments: [claim.epoch, claim.jobId, replica, claim.token])
        }
    }

    /// Whether this replica may write the outcome of a check of the report in `attempt` (a row with its claim
    /// columns): with a claim, only while no other replica took the report over since (the token still matches);
    /// without one, only while no other replica holds a claim that has not run out.
    func mayActOnVerification(_ attempt: SQLRow, claim: VerificationClaim?, at: Double) -> Bool {
        let holder = attempt["verifyClaimedBy"] as String?
        if let claim {
            return holder == replica && (attempt["verifyClaimToken"] as Int64) == claim.token
        }
        guard let holder, holder != replica, let until = attempt["verifyClaimedUntil"] as Double?, until > at else {
            return true
        }
        return false
    }
}
