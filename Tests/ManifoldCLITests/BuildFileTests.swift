import Foundation
import ManifoldAPI
import ManifoldCore
import ManifoldTestSupport
import Testing

@testable import ManifoldCLI

@Suite struct BuildFileTests {
    static let sample = """
        image: registry.local/team/app
        tags: [1.4.2, latest]
        dockerfile: Dockerfile
        build_args:
          VERSION: 1.4.2
          EMPTY:
        secret_build_args: [NPM_TOKEN]
        labels: {org.opencontainers.image.source: https://git.local/app}
        platforms:
          - linux/amd64
          - linux/arm64
          - platform: windows/amd64:10.0.20348
            dockerfile: Dockerfile.windows
            build_args: {BASE: "mcr.microsoft.com/windows/servercore:ltsc2022"}
            agent_labels: {pool: windows}
        max_attempts: 2
        allow_partial: yes
        timeout_seconds: 900
        """

    @Test func readsEverySetting() throws {
        let file = try BuildFile.parse(Self.sample, file: "manifold.yaml")
        #expect(file.image == "registry.local/team/app")
        #expect(file.tags == ["1.4.2", "latest"])
        #expect(file.buildArgs == ["VERSION": "1.4.2", "EMPTY": ""])
        #expect(file.secretBuildArgs == ["NPM_TOKEN"])
        #expect(file.labels == ["org.opencontainers.image.source": "https://git.local/app"])
        #expect(file.maxAttempts == 2)
        #expect(file.allowPartial == true)
        #expect(file.timeoutSeconds == 900)
        #expect(
            file.platforms == [
                PlatformSpec(platform: Platform(os: "linux", architecture: "amd64")),
                PlatformSpec(platform: Platform(os: "linux", architecture: "arm64")),
                PlatformSpec(
                    platform: Platform(os: "windows", architecture: "amd64", osVersion: "10.0.20348"),
                    dockerfile: "Dockerfile.windows", buildArgs: ["BASE": "mcr.microsoft.com/windows/servercore:ltsc2022"],
                    agentLabels: ["pool": "windows"]),
            ])
    }

    @Test(arguments: [
        ("image: a/b\ntag: [x]\n", "manifold.yaml:2:1: tag: unknown key"),
        (
            "platforms:\n  - linux/amd64\n  - platform: linux/arm64\n    dockerfil: X\n",
            "manifold.yaml:4:5: platforms[1].dockerfil: unknown key"
        ),
        (
            "image: r.local/a\ntags: [x]\nplatforms:\n  - platform: linux/amd64\n    dockerfle: D\n",
            "manifold.yaml:5:5: platforms[0].dockerfle: unknown key"
        ),
        ("platforms:\n  - linux/amd64\n  - solaris/sparc\n", "manifold.yaml:3:5: platforms[1]: invalid platform"),
        ("platforms:\n  - {dockerfile: X}\n", "manifold.yaml:2:5: platforms[0]: give the platform"),
        ("max_attempts: many\n", "manifold.yaml:1:15: max_attempts: expected a whole number"),
        ("allow_partial: maybe\n", "manifold.yaml:1:16: allow_partial: expected true or false"),
        ("build_args:\n  A: [1]\n", "manifold.yaml:2:3: build_args.A: expected text, found a list"),
        ("tags: {a: b}\n", "manifold.yaml:1:7: tags: expected a list of text"),
        ("platforms:\n  - linux/amd64\n  - linux/x86_64\n", "manifold.yaml:3:5: platforms[1]: linux/amd64 is listed twice"),
        ("image: [a\n", "manifold.yaml:1:8: a [ list is not closed"),
        ("- a\n", "manifold.yaml:1:1: expected a mapping"),
        ("", "manifold.yaml:1: the file is empty"),
        ("# only a comment\n\n", "manifold.yaml:1: the file is empty"),
    ])
    func errorsNameLineAndKey(_ text: String, _ expected: String) {
        do {
            _ = try BuildFile.parse(text, file: "manifold.yaml")
            Issue.record("accepted \(text)")
        } catch {
            #expect(error.description.hasPrefix(expected), "\(error)")
        }
    }

    @Test func flagsOverrideTheBuildFile() throws {
        let scratch = try ScratchDirectory(prefix: "cli-plan")
        defer { scratch.remove() }
        try Self.sample.write(to: scratch.file("manifold.yaml"), atomically: true, encoding: .utf8)
        let environment = ["NPM_TOKEN": "s3cret"]
        let fromFile = try SubmitPlan.make(flags: SubmitFlags(context: scratch.path), environment: environment)
        #expect(fromFile.spec.image == "registry.local/team/app")
        #expect(fromFile.spec.tags == ["1.4.2", "latest"])
        #expect(fromFile.spec.platforms.count == 3)
        #expect(fromFile.spec.buildArgs["NPM_TOKEN"] == "s3cret")
        #expect(fromFile.spec.secretBuildArgs == ["NPM_TOKEN"])
        #expect(fromFile.spec.allowPartial)
        #expect(fromFile.dockerfiles == ["Dockerfile", "Dockerfile.windows"])
        #expect(fromFile.contextDirectory?.standardizedFileURL.path == scratch.url.standardizedFileURL.path)

        let flags = SubmitFlags(
            image: "registry.local/other", tags: ["dev"], platforms: ["windows/amd64:10.0.20348", "linux/arm64"],
            context: scratch.path, files: ["linux/arm64=Dockerfile.arm", "Dockerfile.main"],
            buildArgs: ["VERSION=2.0", "EXTRA=1"], secretBuildArgs: ["KEY=v"], labels: ["a=b"], maxAttempts: 5)
        let plan = try SubmitPlan.make(flags: flags, environment: environment)
        #expect(plan.spec.image == "registry.local/other")
        #expect(plan.spec.tags == ["dev"])
        #expect(plan.spec.platforms.map(\.platform.description) == ["windows/amd64:10.0.20348", "linux/arm64"])
        #expect(plan.spec.platforms[0].dockerfile == "Dockerfile.windows")
        #expect(plan.spec.platforms[0].agentLabels == ["pool": "windows"])
        #expect(plan.spec.platforms[1].dockerfile == "Dockerfile.arm")
        #expect(plan.spec.dockerfile == "Dockerfile.main")
        #expect(plan.spec.buildArgs["VERSION"] == "2.0")
        #expect(plan.spec.buildArgs["EXTRA"] == "1")
        #expect(plan.spec.secretBuildArgs == ["KEY", "NPM_TOKEN"])
        #expect(plan.spec.labels == ["org.opencontainers.image.source": "https://git.local/app", "a": "b"])
        #expect(plan.spec.maxAttempts == 5)
    }

    @Test func badSubmitSettingsAreReportedBeforeAnythingIsSent() throws {
        let scratch = try ScratchDirectory(prefix: "cli-plan-bad")
        defer { scratch.remove() }
        func failure(_ flags: SubmitFlags, _ environment: [String: String] = [:]) -> String {
            do {
                _ = try SubmitPlan.make(flags: flags, environment: environment, currentDirectory: scratch.url)
                return "accepted"
            } catch { return "\(error)" }
        }
        #expect(failure(SubmitFlags(tags: ["1"], platforms: ["linux/amd64"])).contains("give the image"))
        #expect(failure(SubmitFlags(image: "r.local/a", platforms: ["linux/amd64"])).contains("--tag"))
        #expect(failure(SubmitFlags(image: "r.local/a", tags: ["1"])).contains("--platform"))
        #expect(failure(SubmitFlags(image: "r.local/a", tags: ["1"], platforms: ["linux"])).contains("--platform"))
        #expect(
            failure(SubmitFlags(image: "r.local/a", tags: ["1"], platforms: ["linux/amd64"], files: ["linux/arm64=X"]))
                .contains("not one of the build's platforms"))
        #expect(
            failure(SubmitFlags(image: "r.local/a", tags: ["1"], platforms: ["linux/amd64"], secretBuildArgs: ["MISSING"]))
                .contains("the environment has no MISSING"))
        #expect(
            failure(SubmitFlags(image: "r.local/a:1", tags: ["1"], platforms: ["linux/amd64"])).contains("image"))
        #expect(
            failure(SubmitFlags(image: "r.local/a", tags: ["1"], platforms: ["linux/amd64"], git: "https://g.local/a.git"))
                .contains("URL#REF"))
        let git = try SubmitPlan.make(
            flags: SubmitFlags(image: "r.local/a", tags: ["1"], platforms: ["linux/amd64"], git: "https://g.local/a.git#v1"),
            currentDirectory: scratch.url)
        #expect(git.spec.context == .git(url: "https://g.local/a.git", ref: "v1"))
        #expect(git.contextDirectory == nil)
    }

    @Test func secretsComeFromTheEnvironmentFilesOrFlags() throws {
        let scratch = try ScratchDirectory(prefix: "cli-secrets")
        defer { scratch.remove() }
        try FileManager.default.createDirectory(at: scratch.file("keys"), withIntermediateDirectories: true)
        try Data("-----KEY-----\nabc\n".utf8).write(to: scratch.file("keys/deploy"))
        try Data("from flag file".utf8).write(to: scratch.file("flag.txt"))
        try """
        image: registry.local/team/app
        tags: [1]
        platforms: [linux/amd64]
        secrets: [NPM_TOKEN]
        secret_files: {SSH_KEY: keys/deploy}
        """.write(to: scratch.file("manifold.yaml"), atomically: true, encoding: .utf8)
        let plan = try SubmitPlan.make(
            flags: SubmitFlags(
                context: scratch.path, secrets: ["FROM_ENV", "LITERAL=x=y"], secretFiles: ["FILE=flag.txt"]),
            environment: ["NPM_TOKEN": "npm_1", "FROM_ENV": "env_2"], currentDirectory: scratch.url)
        #expect(
            plan.spec.secrets == [
                "NPM_TOKEN": "npm_1", "SSH_KEY": "-----KEY-----\nabc\n", "FROM_ENV": "env_2", "LITERAL": "x=y",
                "FILE": "from flag file",
            ])
        #expect(plan.spec.buildArgs.isEmpty)

        func failure(_ flags: SubmitFlags) -> String {
            do {
                _ = try SubmitPlan.make(flags: flags, environment: ["NPM_TOKEN": "n"], currentDirectory: scratch.url)
                return "accepted"
            } catch { return "\(error)" }
        }
        let base = SubmitFlags(context: scratch.path)
        var missing = base
        missing.secrets = ["NOPE"]
        #expect(failure(missing).contains("--secret NOPE: the environment has no NOPE"))
        var unreadable = base
        unreadable.secretFiles = ["X=absent.txt"]
        #expect(failure(unreadable).contains("cannot read"))
        try Data(count: BuildLimits.maxSecretBytes + 1).write(to: scratch.file("huge"))
        var huge = base
        huge.secretFiles = ["X=huge"]
        #expect(failure(huge).contains("limit of 65536 bytes"))
        var badName = base
        badName.secrets = ["a/b=c"]
        #expect(failure(badName).contains("not a usable secret name"))
    }
}
