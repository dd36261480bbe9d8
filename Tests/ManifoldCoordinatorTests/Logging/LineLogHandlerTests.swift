import Foundation
import Logging
import ManifoldLogging
import Testing

@testable import ManifoldLogging

@Suite struct LineLogHandlerTests {
    private func event(
        _ message: Logger.Message, level: Logger.Level = .info, metadata: Logger.Metadata? = nil
    ) -> LogEvent {
        LogEvent(
            level: level, message: message, metadata: metadata, source: "ManifoldCoordinator", file: #fileID,
            function: #function, line: #line)
    }

    private func object(_ line: String) throws -> [String: Any] {
        let parsed = try JSONSerialization.jsonObject(with: Data(line.utf8))
        return try #require(parsed as? [String: Any], "not a JSON object: \(line)")
    }

    @Test func aJSONLineCarriesTheFixedFieldsAndEachMetadataKeyAtTheTop() throws {
        let time = Date(timeIntervalSince1970: 1_796_000_000.25)
        let line = LineLogHandler.json(
            event("lease granted", level: .notice),
            label: "manifold.coordinator",
            metadata: [
                "build": "bld_1", "attempt": .stringConvertible(3), "labels": ["pool=release", "gpu"],
                "platform": ["os": "windows", "os.version": "10.0.20348.2700"],
            ],
            time: time)
        #expect(!line.contains("\n"))
        let fields = try object(line)
        #expect(fields["time"] as? String == "2026-11-30T00:53:20.250Z")
        #expect(fields["level"] as? String == "notice")
        #expect(fields["label"] as? String == "manifold.coordinator")
        #expect(fields["message"] as? String == "lease granted")
        #expect(fields["source"] as? String == "ManifoldCoordinator")
        #expect(fields["build"] as? String == "bld_1")
        #expect(fields["attempt"] as? String == "3")
        #expect(fields["labels"] as? [String] == ["pool=release", "gpu"])
        #expect((fields["platform"] as? [String: String])?["os.version"] == "10.0.20348.2700")
    }

    @Test func hostileTextStaysOneLineAndMetadataCannotForgeTheFixedFields() throws {
        let message = "line one\nline two \"quoted\" \u{1B}[31mred\u{1B}[0m {\"level\":\"critical\"}"
        let line = LineLogHandler.json(
            event(Logger.Message(stringLiteral: message)), label: "l",
            metadata: ["level": "critical", "message": "forged", "time": "0", "agent": "a\nb"], time: Date())
        #expect(!line.contains("\n"), "\(line)")
        let fields = try object(line)
        #expect(fields["message"] as? String == message)
        #expect(fields["level"] as? String == "info")
        #expect(fields["metadata.level"] as? String == "critical")
        #expect(fields["metadata.message"] as? String == "forged")
        #expect(fields["metadata.time"] as? String == "0")
        #expect(fields["agent"] as? String == "a\nb")
    }

    @Test func textLinesListMetadataSortedByKey() {
        let line = LineLogHandler.text(
            event("poll held"), label: "manifold.coordinator", metadata: ["job": "job_2", "agent": "lin-01"],
            time: Date(timeIntervalSince1970: 0))
        #expect(line == "1970-01-01T00:00:00.000Z info manifold.coordinator: agent=lin-01 job=job_2 poll held")
    }

    @Test func aFileSinkAppendsWholeLinesFromConcurrentLoggers() async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("log-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let path = directory.appendingPathComponent("agent.log").path
        try Data("kept from before\n".utf8).write(to: URL(fileURLWithPath: path))
        let sink = LogSink.file(path: path)
        await withTaskGroup(of: Void.self) { group in
            for task in 0..<8 {
                group.addTask {
                    let logger = Logger(label: "task-\(task)") { LineLogHandler(label: $0, format: .json, sink: sink) }
                    for index in 0..<200 {
                        logger.info(
                            "record", metadata: ["index": "\(index)", "padding": "\(String(repeating: "x", count: 300))"])
                    }
                }
            }
        }
        let lines = try String(contentsOfFile: path, encoding: .utf8).split(separator: "\n")
        #expect(lines.first == "kept from before")
        #expect(lines.count == 1 + 8 * 200)
        for line in lines.dropFirst() {
            let fields = try object(String(line))
            #expect(fields["message"] as? String == "record")
        }
    }

    @Test func aLogFormatOtherThanTextOrJSONIsRefusedByName() throws {
        #expect(try LogFormat(parsing: " JSON ", source: "x") == .json)
        #expect(throws: LogFormatError(value: "yaml", source: "MANIFOLD_AGENT_LOG_FORMAT")) {
            try LogFormat(parsing: "yaml", source: "MANIFOLD_AGENT_LOG_FORMAT")
        }
        #expect(
            "\(LogFormatError(value: "yaml", source: "MANIFOLD_AGENT_LOG_FORMAT"))"
                == "MANIFOLD_AGENT_LOG_FORMAT: \"yaml\" is not a log format; use text or json")
    }
}
