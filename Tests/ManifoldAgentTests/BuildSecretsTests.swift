import Foundation
import ManifoldAPI
import ManifoldCore
import Testing

@testable import ManifoldAgent

/// How builders receive build secrets: owner-only files, referenced by `--secret id=NAME,src=FILE` or
/// `MANIFOLD_SECRETS_DIR`, never in argv, the environment or a `--build-arg`.
@Suite struct BuildSecretsTests {
    let digest = "sha256:" + String(repeating: "ab", count: 32)

    func makeRequest(_ directory: URL, secrets: [String: String], legacy: [String] = []) throws -> BuildRequest {
        let context = directory.appendingPathComponent("context")
        let scratch = directory.appendingPathComponent("scratch")
        for folder in [context, scratch] {
            try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        }
        try Data("FROM scratch\n".utf8).write(to: context.appendingPathComponent("Dockerfile"))
        var buildArgs = ["VERSION": "1.0"]
        for name in legacy { buildArgs[name] = "legacy-\(name)-value" }
        let spec = JobSpec(
            buildId: "bld", platform: Platform(os: "linux", architecture: "amd64"), image: "r.local/app", tag: "t",
            context: .git(url: "https://x", ref: "main"), dockerfile: "Dockerfile", buildArgs: buildArgs, secrets: secrets,
            secretBuildArgs: legacy, labels: [:], timeoutSeconds: 60)
        let log = try LogSpool(
            file: directory.appendingPathComponent("build.log"), secrets: Array(spec.buildSecrets.values))
        return BuildRequest(
            spec: spec, contextDirectory: context, workDirectory: scratch, log: log, stop: StopSignal(), grace: .seconds(1),
            environment: ProcessInfo.processInfo.environment,
            secrets: try BuildSecrets.write(spec.buildSecrets, in: directory))
    }

    func script(_ directory: URL, _ body: String) throws -> String {
        let file = directory.appendingPathComponent("tool.sh")
        try Data("#!/bin/sh\n\(body)\n".utf8).write(to: file)
        try FileManager.default.setAttributes([.posixPermissions: 0o755], ofItemAtPath: file.path)
        return file.path
    }

    @Test func theCommandBuilderGetsEachSecretAsAnOwnerOnlyFile() async throws {
        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let report = directory.appendingPathComponent("report.txt")
        let tool = try script(
            directory,
            """
            set -e
            stat -c '%a %n' "$MANIFOLD_SECRETS_DIR" "$MANIFOLD_SECRETS_DIR"/* > \(report.path)
            printf '%s|' "$(cat "$MANIFOLD_SECRETS_DIR/NPM_TOKEN")" "$(cat "$MANIFOLD_SECRETS_DIR/MULTI")" >> \(report.path)
            echo >> \(report.path)
            wc -c < "$MANIFOLD_SECRETS_DIR/MULTI" >> \(report.path)
            (env; echo "$@") | grep -c 'npm_value\\|line two' >> \(report.path) || true
            echo \(digest) > "$MANIFOLD_DIGEST_FILE"
            """)
        let request = try makeRequest(directory, secrets: ["NPM_TOKEN": "npm_value", "MULTI": "line one\nline two\n"])
        let result = try await CommandBuilder(executable: tool, arguments: ["--flag"]).build(request)
        #expect(result == .succeeded(imageReference: "r.local/app:t", digest: try Digest(parsing: digest)))
        let lines = try String(contentsOf: report, encoding: .utf8).split(separator: "\n", omittingEmptySubsequences: false)
        let secretsDirectory = directory.appendingPathComponent("secrets").path
        #expect(lines[0] == "700 \(secretsDirectory)")
        #expect(lines[1] == "600 \(secretsDirectory)/MULTI")
        #expect(lines[2] == "600 \(secretsDirectory)/NPM_TOKEN")
        // Exactly the values, byte for byte (the trailing newline too: 18 bytes).
        #expect(lines[3] == "npm_value|line one")
        #expect(lines[4] == "line two|")
        #expect(lines[5].trimmingCharacters(in: .whitespaces) == "18")
        #expect(lines[6] == "0", "a value was in the command's environment or arguments")
        request.secrets?.remove()
        #expect(!FileManager.default.fileExists(atPath: secretsDirectory))
    }

    @Test func ociToolsGetSecretFlagsAndNeverABuildArgWithTheValue() async throws {
        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let recorded = directory.appendingPathComponent("argv.txt")
        let tool = try script(
            directory,
            """
            for argument in "$@"; do echo "$argument" >> \(recorded.path); done
            env >> \(recorded.path).env
            previous=""
            for argument in "$@"; do
                if [ "$previous" = "--digestfile" ]; then echo \(digest) > "$argument"; fi
                previous="$argument"
            done
            """)
        // NPM_TOKEN is a secret; OLD came from a protocol 2 coordinator as a secret build arg.
        let request = try makeRequest(directory, secrets: ["NPM_TOKEN": "npm_value"], legacy: ["OLD"])
        let builder = OCIToolBuilder(executable: tool, globalArguments: [], buildArguments: [], pushArguments: [])
        let result = try await builder.build(request)
        #expect(result == .succeeded(imageReference: "r.local/app:t", digest: try Digest(parsing: digest)))
        let argv = try String(contentsOf: recorded, encoding: .utf8)
        let environment = try String(contentsOf: URL(fileURLWithPath: recorded.path + ".env"), encoding: .utf8)
        let secrets = directory.appendingPathComponent("secrets").path
        #expect(argv.contains("--secret\nid=NPM_TOKEN,src=\(secrets)/NPM_TOKEN\n"), "\(argv)")
        #expect(argv.contains("--secret\nid=OLD,src=\(secrets)/OLD\n"), "\(argv)")
        #expect(argv.contains("--build-arg\nVERSION=1.0\n"), "\(argv)")
        #expect(!argv.contains("OLD="), "\(argv)")
        for text in [argv, environment, try String(contentsOf: request.log.file, encoding: .utf8)] {
            #expect(!text.contains("npm_value") && !text.contains("legacy-OLD-value"))
        }
        #expect(try String(contentsOfFile: "\(secrets)/OLD", encoding: .utf8) == "legacy-OLD-value")
    }

    @Test func aSecretNameThatCouldLeaveItsDirectoryIsRefused() throws {
        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        for name in ["../escape", "a/b", "..", "id=x,src=y"] {
            #expect(throws: AgentError.self, "\(name)") { try BuildSecrets.write([name: "v"], in: directory) }
        }
        #expect(!FileManager.default.fileExists(atPath: directory.appendingPathComponent("escape").path))
    }

    func temporaryDirectory() throws -> URL {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("secrets-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        return directory
    }
}
