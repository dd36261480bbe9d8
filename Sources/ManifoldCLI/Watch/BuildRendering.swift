import Foundation
import ManifoldAPI
import ManifoldCore

/// Text for builds: the plain event lines of a non-terminal watch, the live table, and `build show`.
enum BuildRendering {
    /// One line for an event, or nil for events that say nothing new.
    ///
    /// `[linux/arm64] assigned to builder-2 (attempt 1 of 3)`; build-wide events have no platform prefix.
    static func line(for event: BuildEvent, build: BuildView?) -> String? {
        let data = event.data
        let prefix = event.platform.map { "[\($0)] " } ?? ""
        let maxAttempts = event.jobId.flatMap { id in build?.jobs.first(where: { $0.id == id })?.maxAttempts }
        switch event.type {
        case "build.submitted":
            let platforms = (data["platforms"] ?? "").split(separator: ",").joined(separator: ", ")
            let tags = (data["tags"] ?? "").split(separator: ",").joined(separator: ", ")
            return "build \(event.buildId) submitted: \(data["image"] ?? "") for \(platforms) → tags \(tags)"
        case "job.queued":
            return prefix + "queued" + (data["reason"].map { " (\($0))" } ?? "")
        case "job.assigned":
            let attempt = data["attempt"].map { " (attempt \($0)" + (maxAttempts.map { " of \($0)" } ?? "") + ")" } ?? ""
            return prefix + "assigned to \(data["agent"] ?? "an agent")" + attempt
        case "job.phase":
            return prefix + (data["phase"] ?? "working")
        case "job.log":
            return data["line"].map { prefix + "| " + $0 }
        case "job.verifying":
            return prefix + "verifying \(data["digest"] ?? "the image") in the registry"
        case "job.verification_postponed":
            return prefix + "verification postponed: \(data["reason"] ?? "the registry did not answer")"
        case "job.succeeded":
            return prefix + "done: \(data["digest"] ?? "")"
        case "job.retrying":
            let attempt = data["attempt"].map { "attempt \($0)" + (data["maxAttempts"].map { " of \($0)" } ?? "") } ?? "attempt"
            return prefix + "\(attempt) failed: \(data["reason"] ?? "no reason given"); retrying"
        case "job.failed":
            let attempts = data["attempts"].map { " after \($0) attempt" + ($0 == "1" ? "" : "s") } ?? ""
            return prefix + "failed\(attempts): \(data["reason"] ?? "no reason given")"
        case "job.lost":
            if let agent = data["agent"], !agent.isEmpty { return prefix + "lost agent \(agent) (its lease expired)" }
            return prefix + "attempt ended: \(data["reason"] ?? "lease lost")"
        case "job.cancelled":
            return prefix + "cancelled"
        case "job.released":
            return prefix + "given back by its agent (\(data["reason"] ?? "shutting down")); not counted as an attempt"
        case "tag.kept":
            return data["reason"] ?? "tag \(data["tag"] ?? "?") kept: held by a build submitted later"
        case "list.pushed_after_cancel", "list.pushed_superseded":
            return data["reason"] ?? "a list push that was already under way landed: \(data["digest"] ?? "")"
        case "list.publishing":
            return "publishing the list (\(data["platforms"] ?? "?") of \(data["of"] ?? "?") platforms)"
        case "list.retrying":
            return "publishing the list failed (attempt \(data["attempt"] ?? "?")): \(data["reason"] ?? ""); retrying"
        case "list.published":
            let tags = (data["tags"] ?? "").split(separator: ",").joined(separator: ", ")
            let kind = data["partial"] == "true" ? "partially published" : "published"
            let unchanged = data["unchanged"] == "true" ? " (unchanged)" : ""
            return "\(kind) \(data["digest"] ?? "") to \(tags)\(unchanged)"
        case "build.failed":
            return "build failed: \(data["reason"] ?? "no reason given")"
        case "build.pruned":
            let days = data["retentionDays"].map { " after \($0) days" } ?? ""
            return "logs and events removed by retention\(days) (\(data["logBytes"] ?? "0") log bytes, "
                + "\(data["events"] ?? "0") events); the result above is kept"
        case "job.log_pruned":
            let days = data["retentionDays"].map { " after \($0) days" } ?? ""
            return prefix + "log of attempt \(data["attempt"] ?? "?") removed by retention\(days)"
        case "build.cancelled":
            let by = data["by"].flatMap { $0.isEmpty ? nil : $0 }
            return "build cancelled" + (by.map { " by \($0)" } ?? "")
        default:
            let details = data.keys.sorted().map { "\($0)=\(data[$0]!)" }.joined(separator: " ")
            return prefix + event.type + (details.isEmpty ? "" : " " + details)
        }
    }

    /// The live table: a title, one row per platform, a hint per waiting platform and the list footer.
    /// Every line fits in `width` columns, so redrawing in place never wraps.
    static func table(_ progress: BuildProgress, now: Date, width: Int) -> [String] {
        let build = progress.build
        var table = TextTable(["PLATFORM", "STATE", "AGENT", "ELAPSED", "ATTEMPT", "DIGEST", "LOG"])
        var hints: [String] = []
        for job in build.jobs {
            table.add([
                job.platform.description, progress.state(of: job, now: now), job.agent ?? "-",
                progress.elapsed(of: job, now: now).map(HumanFormat.duration) ?? "-",
                job.attempts == 0 ? "-" : "\(job.attempts)/\(job.maxAttempts)",
                job.digest.map { HumanFormat.shortDigest($0.description) } ?? "-",
                progress.logLine(of: job).map { $0.trimmingCharacters(in: .whitespaces) } ?? "",
            ])
            if let hint = progress.waitingHint(for: job) { hints.append("\(job.platform): \(hint)") }
            if job.state == .failed, let reason = job.reason { hints.append("\(job.platform): \(reason)") }
        }
        var lines = ["Build \(build.id): \(build.image) → \(build.tags.joined(separator: ", "))", ""]
        lines += table.render().split(separator: "\n", omittingEmptySubsequences: false).dropLast().map(String.init)
        lines += hints
        lines += ["", progress.footer()]
        return lines.map { HumanFormat.truncate($0, to: width) }
    }

    /// `build show`: the build's fields, then one row per platform with its digest and timings.
    static func show(_ build: BuildView, now: Date) -> String {
        var lines: [(String, String)] = [
            ("Build", build.id), ("State", build.state.rawValue), ("Image", build.image),
            ("Tags", build.tags.joined(separator: ", ")),
        ]
        if let digest = build.listDigest {
            lines.append(("List", digest.description + (build.listMediaType.map { " (\($0))" } ?? "")))
        }
        lines.append(
            ("Submitted", HumanFormat.timestamp(build.createdAt) + (build.submittedBy.map { " by \($0)" } ?? "")))
        if let finished = build.finishedAt {
            lines.append(
                (
                    "Finished",
                    HumanFormat.timestamp(finished)
                        + " (took \(HumanFormat.duration(finished.timeIntervalSince(build.createdAt))))"
                ))
        } else {
            lines.append(("Running", "for \(HumanFormat.duration(now.timeIntervalSince(build.createdAt)))"))
        }
        if build.allowPartial { lines.append(("Partial", "allowed")) }
        if let reason = build.reason { lines.append(("Reason", reason)) }
        if let notice = build.notice { lines.append(("Notice", notice)) }
        if let removed = build.logsRemovedAt {
            lines.append(("Logs", "removed by retention on \(HumanFormat.timestamp(removed))"))
        }
        var output = lines.map { $0.0.padding(toLength: 11, withPad: " ", startingAt: 0) + $0.1 }.joined(separator: "\n")
        output += "\n\n"
        let progress = BuildProgress(build: build)
        var table = TextTable(["PLATFORM", "STATE", "ATTEMPTS", "AGENT", "STARTED", "DURATION", "DIGEST"])
        for job in build.jobs {
            let duration: String
            if let start = job.startedAt {
                duration = HumanFormat.duration((job.finishedAt ?? now).timeIntervalSince(start))
            } else {
                duration = "-"
            }
            table.add([
                job.platform.description, progress.state(of: job, now: now), "\(job.attempts)/\(job.maxAttempts)",
                job.agent ?? "-", job.startedAt.map(HumanFormat.timestamp) ?? "-", duration,
                job.digest?.description ?? "-",
            ])
        }
        output += table.render()
        let notes = build.jobs.compactMap { job -> String? in
            guard let reason = job.reason, job.state != .succeeded else { return nil }
            return "  \(job.platform): \(reason)"
        }
        if !notes.isEmpty { output += "\nReasons:\n" + notes.joined(separator: "\n") + "\n" }
        return output
    }
}
