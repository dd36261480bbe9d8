import Foundation
import ManifoldAPI
import ManifoldCore
import ManifoldHTTP
import ManifoldTestSupport
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// `--log-format json`: every line a collector reads from the coordinator is one JSON object, with the record's
/// fields (build, job, agent, …) at the top level; a bad format is refused before anything starts.
@Suite struct StructuredLogTests {
    @Test func aCoordinatorWithJSONLogsWritesOneObjectALineWithTheBuildsFields() async throws {
        let scratch = try ScratchDirectory(prefix: "json-logs")
        defer { scratch.remove() }
        let (port, state, initialised) = try CoordinatorProcessTests.initialise(in: scratch)
        let admin = try #require(CoordinatorProcess.value(after: "Admin token", in: initialised.stdout))
        let join = try #require(CoordinatorProcess.value(after: "Agent join token", in: initialised.stdout))
        let running = try CoordinatorProcess.serve(
            state: state, port: port, logDirectory: scratch.url, name: "coordinator",
            environment: ["MANIFOLD_LOG_LEVEL": "debug"], arguments: ["--log-format", "json"])
        defer {
            running.process.stop()
            running.client.shutdown()
        }
        let created = try await CoordinatorProcess.call(
            running, "POST", "/api/v1/tokens", token: admin, json: CreateTokenRequest(name: "ci", role: .submitter))
        let submitter = try APICoding.decoder().decode(CreatedToken.self, from: created.body).secret
        let linux = Platform(os: "linux", architecture: "amd64")
        let joined = try await CoordinatorProcess.call(
            running, "POST", "/api/v1/agent/join", token: join,
            json: JoinRequest(name: "builder", platforms: [linux], labels: [:], builders: ["command"], version: "test"))
        let agent = try APICoding.decoder().decode(JoinResponse.self, from: joined.body).secret
        let context = Data("FROM scratch\n".utf8)
        let contextDigest = Digest.compute(of: context)
        var upload = HTTPRequest(
            method: "PUT", url: running.base.appendingPathComponent("api/v1/contexts/\(contextDigest)"), body: .bytes(context))
        upload.headers.add("Authorization", "Bearer \(submitter)")
        #expect(try await running.client.execute(upload).status == 201)
        let spec = BuildSpec(
            image: "127.0.0.1:5000/json/app", tags: ["1.0"], platforms: [PlatformSpec(platform: linux)],
            context: .upload(digest: contextDigest))
        let submitted = try await CoordinatorProcess.call(running, "POST", "/api/v1/builds", token: submitter, json: spec)
        let build = try APICoding.decoder().decode(BuildView.self, from: submitted.body)
        let polled = try await CoordinatorProcess.call(
            running, "POST", "/api/v1/agent/poll", token: agent,
            json: PollRequest(platforms: [linux], labels: [:], builders: ["command"], version: "test"))
        #expect(try APICoding.decoder().decode(PollResponse.self, from: polled.body).lease != nil)
        // The build submitted (logged with its id as a field), leased, then cancelled.
        let cancelled = try await CoordinatorProcess.call(running, "POST", "/api/v1/builds/\(build.id)/cancel", token: submitter)
        #expect(cancelled.status == 200 || cancelled.status == 202, "\(cancelled.status)")

        // The process's output: "listening on port N" on standard output, every other line a log record.
        var records: [[String: Any]] = []
        let deadline = ContinuousClock.now + .seconds(60)
        repeat {
            try await Task.sleep(for: .milliseconds(200))
            records = []
            for line in running.process.output().split(separator: "\n") where !line.hasPrefix("listening on port ") {
                let parsed = try? JSONSerialization.jsonObject(with: Data(line.utf8))
                let record = try #require(parsed as? [String: Any], "not a JSON object: \(line)")
                records.append(record)
            }
        } while !records.contains(where: { $0["build"] as? String == build.id }) && ContinuousClock.now < deadline
        #expect(!records.isEmpty)
        for record in records {
            for field in ["time", "level", "label", "message", "source"] {
                #expect(record[field] is String, "no \(field) in \(record)")
            }
        }
        #expect(
            records.contains { $0["build"] as? String == build.id }, "no record carries build \(build.id):\n\(records)")
    }

    @Test func aLogFormatOtherThanTextOrJSONStopsCoordinatorAndAgentNamingIt() async throws {
        let scratch = try ScratchDirectory(prefix: "bad-log-format")
        defer { scratch.remove() }
        let (_, state, _) = try CoordinatorProcessTests.initialise(in: scratch)
        let serve = try await manifold(["serve", "--state-dir", state, "--log-format", "logfmt"])
        #expect(serve.status != 0)
        #expect(serve.stderr.contains("logfmt") && serve.stderr.contains("text or json"), "\(serve.stderr)")

        let agent = try await runCommand(
            try manifoldAgentBinary(), ["doctor", "--state-dir", scratch.file("agent").path],
            environment: ["MANIFOLD_AGENT_LOG_FORMAT": "logfmt"])
        #expect(agent.status == 64, "\(agent)")
        #expect(
            agent.stderr.contains("MANIFOLD_AGENT_LOG_FORMAT: \"logfmt\" is not a log format; use text or json"),
            "\(agent.stderr)")
    }
}
