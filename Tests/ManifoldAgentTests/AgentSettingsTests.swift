import Foundation
import ManifoldTestSupport
import Testing

@testable import ManifoldAgent

@Suite struct AgentSettingsTests {
    @Test func flagsBeatEnvironmentWhichBeatsTheConfigFile() throws {
        let scratch = try ScratchDirectory(prefix: "settings")
        defer { scratch.remove() }
        let config = scratch.file("agent.conf")
        try Data(
            """
            # comment
            builder = buildah
            platform = linux/arm64
            label = pool=arm
            drain_timeout = 60
            global_arg = --storage-driver
            global_arg = vfs
            command = "/usr/local/bin/build.sh"
            """.utf8
        ).write(to: config)
        let options = try StateOptions.parse(["--state-dir", scratch.path, "--config", config.path])
        let fileOnly = try resolveSettings(state: options, environment: [:]) { _ in }
        #expect(fileOnly.builder == "buildah")
        #expect(fileOnly.platforms == ["linux/arm64"])
        #expect(fileOnly.labels == ["pool": "arm"])
        #expect(fileOnly.drainTimeoutSeconds == 60)
        #expect(fileOnly.globalArguments == ["--storage-driver", "vfs"])
        #expect(fileOnly.command == "/usr/local/bin/build.sh")
        let environment = ["MANIFOLD_AGENT_BUILDER": "podman", "MANIFOLD_AGENT_PLATFORM": "linux/amd64, linux/386"]
        let withEnvironment = try resolveSettings(state: options, environment: environment) { _ in }
        #expect(withEnvironment.builder == "podman")
        #expect(withEnvironment.platforms == ["linux/amd64", "linux/386"])
        let withFlags = try resolveSettings(state: options, environment: environment) { settings throws(AgentSettingsError) in
            try settings.apply(key: "builder", value: "command", origin: "--builder")
        }
        #expect(withFlags.builder == "command")
        #expect(withFlags.drainTimeoutSeconds == 60)
    }

    @Test func configErrorsNameTheLine() throws {
        let scratch = try ScratchDirectory(prefix: "settings")
        defer { scratch.remove() }
        let config = scratch.file("agent.conf")
        try Data("builder = buildah\n\nbuilder = kaniko\n".utf8).write(to: config)
        var settings = AgentSettings(stateDirectory: scratch.path)
        #expect(throws: AgentSettingsError.self) { try settings.load(file: config.path) }
        do {
            try settings.load(file: config.path)
        } catch {
            #expect(error.description.contains("agent.conf:3"), "\(error)")
            #expect(error.description.contains("kaniko"))
        }
        try Data("no equals sign\n".utf8).write(to: config)
        do {
            try settings.load(file: config.path)
            Issue.record("accepted a line without =")
        } catch {
            #expect(error.description.contains("agent.conf:1"))
        }
    }
}
