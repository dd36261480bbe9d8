import Foundation
import ManifoldAPI
import ManifoldCore
import Testing

@testable import ManifoldCLI

/// Snapshots of the text users read: plain watch lines, the live table and `build show`.
@Suite struct BuildRenderingTests {
    static let t0 = Date(timeIntervalSince1970: 1_790_000_000)
    static let digestA = try! Digest(parsing: "sha256:" + String(repeating: "a", count: 64))
    static let digestL = try! Digest(parsing: "sha256:" + String(repeating: "1", count: 64))
    static let linux = Platform(os: "linux", architecture: "amd64")
    static let windows = Platform(os: "windows", architecture: "amd64", osVersion: "10.0.20348")

    static func build(state: BuildState, jobs: [JobView], list: Digest? = nil, reason: String? = nil) -> BuildView {
        BuildView(
            id: "bld_1", state: state, image: "registry.local/app", tags: ["1.0", "latest"], jobs: jobs, listDigest: list,
            listMediaType: list == nil ? nil : MediaType.ociImageIndex, reason: reason, submittedBy: "ci", createdAt: t0,
            updatedAt: t0, finishedAt: state.isFinal ? t0.addingTimeInterval(75) : nil, allowPartial: false)
    }

    static func event(_ id: Int64, _ type: String, _ platform: Platform? = nil, _ data: [String: String] = [:]) -> BuildEvent {
        BuildEvent(
            id: id, buildId: "bld_1", jobId: platform == nil ? nil : "job_\(platform!.os)", platform: platform?.description,
            type: type, data: data, time: t0)
    }

    @Test func plainWatchLines() {
        let events = [
            Self.event(
                1, "build.submitted", nil,
                ["image": "registry.local/app", "tags": "1.0,latest", "platforms": "linux/amd64,windows/amd64:10.0.20348"]),
            Self.event(2, "job.assigned", Self.linux, ["agent": "lin-1", "attempt": "1", "epoch": "3"]),
            Self.event(3, "job.phase", Self.linux, ["phase": "building"]),
            Self.event(4, "job.log", Self.linux, ["line": "STEP 1/2: FROM scratch"]),
            Self.event(5, "job.retrying", Self.linux, ["reason": "exit code 1", "attempt": "1", "maxAttempts": "3", "at": "x"]),
            Self.event(6, "job.lost", Self.linux, ["agent": "lin-1", "epoch": "3"]),
            Self.event(7, "job.verifying", Self.linux, ["digest": Self.digestA.description, "image": "r/app:1.0-linux-amd64"]),
            Self.event(8, "job.succeeded", Self.linux, ["digest": Self.digestA.description]),
            Self.event(9, "job.failed", Self.windows, ["reason": "no space left", "attempts": "3"]),
            Self.event(10, "list.publishing", nil, ["platforms": "1", "of": "2"]),
            Self.event(
                11, "list.published", nil,
                ["digest": Self.digestL.description, "tags": "1.0,latest", "partial": "true", "mediaType": "x"]),
            Self.event(12, "build.failed", nil, ["reason": "1 of 2 platform(s) failed; no list was published"]),
            Self.event(13, "build.cancelled", nil, ["by": "ci"]),
            Self.event(14, "job.queued", Self.windows, ["reason": "retry requested"]),
            Self.event(15, "something.new", Self.windows, ["b": "2", "a": "1"]),
        ]
        let lines = events.compactMap { BuildRendering.line(for: $0, build: nil) }
        #expect(
            lines == [
                "build bld_1 submitted: registry.local/app for linux/amd64, windows/amd64:10.0.20348 → tags 1.0, latest",
                "[linux/amd64] assigned to lin-1 (attempt 1)",
                "[linux/amd64] building",
                "[linux/amd64] | STEP 1/2: FROM scratch",
                "[linux/amd64] attempt 1 of 3 failed: exit code 1; retrying",
                "[linux/amd64] lost agent lin-1 (its lease expired)",
                "[linux/amd64] verifying \(Self.digestA) in the registry",
                "[linux/amd64] done: \(Self.digestA)",
                "[windows/amd64:10.0.20348] failed after 3 attempts: no space left",
                "publishing the list (1 of 2 platforms)",
                "partially published \(Self.digestL) to 1.0, latest",
                "build failed: 1 of 2 platform(s) failed; no list was published",
                "build cancelled by ci",
                "[windows/amd64:10.0.20348] queued (retry requested)",
                "[windows/amd64:10.0.20348] something.new a=1 b=2",
            ])
    }

    @Test func liveTableWithAWaitingPlatform() {
        let jobs = [
            JobView(
                id: "job_linux", platform: Self.linux, state: .assigned, attempts: 1, maxAttempts: 3, agent: "lin-1",
                phase: "building", lastLogLine: "old line", startedAt: Self.t0.addingTimeInterval(5)),
            JobView(id: "job_windows", platform: Self.windows, state: .queued, attempts: 0, maxAttempts: 3, notBefore: Self.t0),
        ]
        var progress = BuildProgress(
            build: Self.build(state: .running, jobs: jobs),
            agents: [
                AgentView(
                    id: "a1", name: "lin-1", platforms: [Self.linux, Platform(os: "linux", architecture: "arm64")], labels: [:],
                    builders: ["buildah"], version: "1", state: .active, currentJob: "job_linux", joinedAt: Self.t0,
                    lastSeenAt: Self.t0)
            ])
        progress.apply(Self.event(9, "job.log", Self.linux, ["line": "STEP 2/2: COPY . /app"]))
        let lines = BuildRendering.table(progress, now: Self.t0.addingTimeInterval(65), width: 200)
        #expect(
            lines == [
                "Build bld_1: registry.local/app → 1.0, latest",
                "",
                "PLATFORM                  STATE              AGENT  ELAPSED  ATTEMPT  DIGEST  LOG",
                "linux/amd64               building           lin-1  1m00s    1/3      -       STEP 2/2: COPY . /app",
                "windows/amd64:10.0.20348  waiting for agent  -      1m05s    -        -",
                "windows/amd64:10.0.20348: waiting for a windows/amd64:10.0.20348 host: no agent offers it (agents offer linux/amd64, linux/arm64)",
                "",
                "list: waiting for 2 of 2 platforms",
            ])
        // Narrow terminals cut lines instead of wrapping them, so the redraw stays in place.
        #expect(BuildRendering.table(progress, now: Self.t0, width: 30).allSatisfy { $0.count <= 30 })
    }

    /// The plain watch reads the build again only after an event that may put a job back in the queue; an assignment
    /// seen in the stream takes the job out of the queue by itself, so its waiting hint ends with it.
    @Test func anAssignmentEndsTheWaitWithoutReadingTheBuildAgain() {
        let waiting = JobView(
            id: "job_windows", platform: Self.windows, state: .queued, attempts: 0, maxAttempts: 3, notBefore: Self.t0)
        var progress = BuildProgress(build: Self.build(state: .queued, jobs: [waiting]), agents: [])
        let hint = "waiting for a windows/amd64:10.0.20348 host: no agent is taking jobs"
        #expect(progress.waitingHint(for: progress.build.jobs[0]) == hint)
        progress.apply(Self.event(3, "job.assigned", Self.windows, ["agent": "win-1", "attempt": "1"]))
        #expect(progress.build.jobs[0].state == .assigned)
        #expect(progress.build.jobs[0].attempts == 1)
        #expect(progress.waitingHint(for: progress.build.jobs[0]) == nil)
        // Replayed from the start of the stream, an earlier attempt's assignment leaves a job queued again alone.
        var retried = waiting
        retried.attempts = 1
        var replay = BuildProgress(build: Self.build(state: .running, jobs: [retried]), agents: [])
        replay.apply(Self.event(3, "job.assigned", Self.windows, ["agent": "win-1", "attempt": "1"]))
        #expect(replay.build.jobs[0].state == .queued)
        #expect(replay.waitingHint(for: replay.build.jobs[0]) == hint)
        for type in ["job.queued", "job.retrying", "job.lost", "job.released"] {
            #expect(WatchDisplay.mayQueueAJob(type), "\(type)")
        }
        let others = [
            "build.submitted", "job.assigned", "job.phase", "job.log", "job.verifying", "job.succeeded", "list.published",
        ]
        for type in others {
            #expect(!WatchDisplay.mayQueueAJob(type), "\(type)")
        }
    }

    @Test func aPlatformWaitingForALabelledHostSaysWhichLabel() {
        let job = JobView(
            id: "job_windows", platform: Self.windows, state: .queued, attempts: 0, maxAttempts: 3, notBefore: Self.t0,
            agentLabels: ["pool": "gpu"])
        let agent = AgentView(
            id: "a2", name: "win-1", platforms: [Platform(os: "windows", architecture: "amd64", osVersion: "10.0.20348.2227")],
            labels: ["pool": "default"], builders: ["docker"], version: "1", state: .active, currentJob: nil, joinedAt: Self.t0,
            lastSeenAt: Self.t0)
        let progress = BuildProgress(build: Self.build(state: .queued, jobs: [job]), agents: [agent])
        #expect(
            progress.waitingHint(for: job)
                == "waiting for a windows/amd64:10.0.20348 host labelled pool=gpu: the agents offering windows/amd64:10.0.20348 (win-1) lack the label"
        )
        var labelled = agent
        labelled.labels = ["pool": "gpu"]
        #expect(BuildProgress(build: Self.build(state: .queued, jobs: [job]), agents: [labelled]).waitingHint(for: job) == nil)
    }

    @Test func showPublishedBuild() {
        let jobs = [
            JobView(
                id: "job_linux", platform: Self.linux, state: .succeeded, attempts: 1, maxAttempts: 3, agent: "lin-1",
                digest: Self.digestA, startedAt: Self.t0.addingTimeInterval(2), finishedAt: Self.t0.addingTimeInterval(40)),
            JobView(
                id: "job_windows", platform: Self.windows, state: .succeeded, attempts: 2, maxAttempts: 3, agent: "win-1",
                digest: Self.digestA, startedAt: Self.t0.addingTimeInterval(3), finishedAt: Self.t0.addingTimeInterval(70)),
        ]
        let text = BuildRendering.show(Self.build(state: .published, jobs: jobs, list: Self.digestL), now: Self.t0)
        let a = Self.digestA.description
        #expect(
            text == """
                Build      bld_1
                State      published
                Image      registry.local/app
                Tags       1.0, latest
                List       \(Self.digestL) (application/vnd.oci.image.index.v1+json)
                Submitted  2026-09-21 14:13:20Z by ci
                Finished   2026-09-21 14:14:35Z (took 1m15s)

                PLATFORM                  STATE  ATTEMPTS  AGENT  STARTED               DURATION  DIGEST
                linux/amd64               done   1/3       lin-1  2026-09-21 14:13:22Z  38s       \(a)
                windows/amd64:10.0.20348  done   2/3       win-1  2026-09-21 14:13:23Z  1m07s     \(a)

                """)
    }

    @Test func retentionSaysWhatWasRemovedAndTheResultStays() {
        #expect(
            BuildRendering.line(
                for: Self.event(9, "build.pruned", nil, ["logBytes": "5120", "events": "42", "retentionDays": "30"]),
                build: nil)
                == "logs and events removed by retention after 30 days (5120 log bytes, 42 events); the result above is kept")
        #expect(
            BuildRendering.line(
                for: Self.event(10, "job.log_pruned", Self.linux, ["attempt": "1", "logBytes": "9", "retentionDays": "30"]),
                build: nil) == "[linux/amd64] log of attempt 1 removed by retention after 30 days")
        var build = Self.build(state: .failed, jobs: [], reason: "1 of 1 platform(s) failed")
        build.logsRemovedAt = Self.t0.addingTimeInterval(30 * 86_400)
        let text = BuildRendering.show(build, now: Self.t0)
        #expect(text.contains("Logs       removed by retention on 2026-10-21 14:13:20Z"), "\(text)")
    }

    @Test func footers() {
        let job = JobView(id: "j", platform: Self.linux, state: .failed, attempts: 3, maxAttempts: 3, reason: "exit 1")
        #expect(
            BuildProgress(build: Self.build(state: .failed, jobs: [job], reason: "1 of 1 platform(s) failed")).footer()
                == "build failed: 1 of 1 platform(s) failed")
        #expect(
            BuildProgress(build: Self.build(state: .published, jobs: [], list: Self.digestL)).footer()
                == "list: published \(Self.digestL) to 1.0, latest")
        #expect(BuildProgress(build: Self.build(state: .publishing, jobs: [])).footer() == "list: publishing to 1.0, latest")
    }
}
