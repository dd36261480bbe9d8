import Foundation
import ManifoldTestSupport
import Testing

/// The packaging scripts (`coordinator/package.sh`, `agent/package.sh`) with the built executables: a tarball laid out
/// for a prefix whose manual pages render without warnings and whose shell completions complete real commands in
/// bash, zsh and fish.
@Suite struct PackagingTests {
    static let repository = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent()

    /// Runs `script` on the executables next to the test bundle (their directory also holds swift-argument-parser's
    /// `generate-manual`, built by `deploy/run-tests.sh`) and unpacks the tarball it makes into `prefix`, as an admin
    /// would into /usr/local. Returns the tarball's entries.
    static func packageAndInstall(
        script: String, _ arguments: [String] = [], scratch: ScratchDirectory, prefix: URL
    ) async throws -> [String] {
        let binaries = URL(fileURLWithPath: try manifoldBinary()).deletingLastPathComponent().path
        #expect(
            FileManager.default.isExecutableFile(atPath: binaries + "/generate-manual"),
            "build swift-argument-parser's manual generator first: swift build --product generate-manual")
        let output = scratch.file("packages")
        let packaged = try await runCommand(
            repository.appendingPathComponent(script).path, ["--bin-path", binaries, "--output", output.path] + arguments,
            timeout: 600)
        try #require(packaged.status == 0, "\(packaged.stderr)\(packaged.stdout)")
        // The test's executables are debug builds that load the Swift runtime from the toolchain: the script says the
        // package runs only beside it (its own release build links the runtime in).
        #expect(
            packaged.stderr.contains("links the Swift runtime dynamically (/"),
            "no warning that the package needs the toolchain: \(packaged.stderr)")
        let tarball = packaged.stdout.split(separator: "\n").last.map(String.init) ?? ""
        try #require(tarball.hasPrefix(output.path) && tarball.hasSuffix("-linux-amd64.tar.gz"), "\(packaged.stdout)")
        try FileManager.default.createDirectory(at: prefix, withIntermediateDirectories: true)
        try await runChecked("tar", ["-xzf", tarball, "-C", prefix.path, "--strip-components=1"])
        return try await runChecked("tar", ["-tzf", tarball]).split(separator: "\n").map {
            String($0.drop(while: { $0 != "/" }).dropFirst())
        }
    }

    /// What bash's completion offers for `line` (the last word is completed) with the installed script loaded.
    static func bashCompletions(_ line: String, script: URL, command: String) async throws -> Set<String> {
        let program = """
            source '\(script.path)'
            read -ra COMP_WORDS <<< "$LINE"
            [[ "$LINE" == *" " ]] && COMP_WORDS+=("")
            COMP_CWORD=$((${#COMP_WORDS[@]} - 1))
            COMP_LINE="$LINE"
            COMP_POINT=${#COMP_LINE}
            function=$(complete -p \(command) | sed -n 's/.* -F \\([^ ]*\\) .*/\\1/p')
            "$function" \(command) "${COMP_WORDS[COMP_CWORD]}" "${COMP_WORDS[COMP_CWORD-1]}"
            printf '%s\\n' "${COMPREPLY[@]}"
            """
        let result = try await runCommand("bash", ["-c", program], environment: ["LINE": line])
        #expect(result.status == 0, "\(result.stderr)")
        return Set(result.stdout.split(separator: "\n").map(String.init))
    }

    /// Warnings groff gives for a manual page (none for a well-formed one).
    static func manualWarnings(_ page: URL) async throws -> String {
        let result = try await runCommand("groff", ["-mandoc", "-ww", "-z", page.path])
        return result.stderr + (result.status == 0 ? "" : "exit \(result.status)")
    }

    @Test func theCoordinatorPackageHasItsManualPagesCompletionsAndUnit() async throws {
        let scratch = try ScratchDirectory(prefix: "manifold-package")
        defer { scratch.remove() }
        let prefix = scratch.file("usr-local")
        let entries = try await Self.packageAndInstall(
            script: "coordinator/package.sh", ["manifold"], scratch: scratch, prefix: prefix)
        for expected in [
            "bin/manifold", "bin/manifold-coordinator", "share/man/man1/manifold.1", "share/man/man1/manifold.build.submit.1",
            "share/man/man1/manifold.serve.1", "share/man/man1/manifold.manifest.create.1",
            "share/bash-completion/completions/manifold", "share/zsh/site-functions/_manifold",
            "share/fish/vendor_completions.d/manifold.fish", "lib/systemd/system/manifold.service",
            "share/doc/manifold/README.md", "share/doc/manifold/manifold.yaml.example",
        ] {
            #expect(entries.contains(expected), "\(expected) is missing from the package: \(entries)")
        }
        // The packaged executable is the one that was built.
        let version = try await runChecked(prefix.appendingPathComponent("bin/manifold").path, ["--version"])
        await #expect(version == (try runChecked(try manifoldBinary(), ["--version"])))
        // `manifold init` hands over to the packaged `manifold-coordinator` beside it, with no build directory on PATH.
        let state = scratch.file("state").path
        let initialised = try await runCommand(
            prefix.appendingPathComponent("bin/manifold").path, ["init", "--state-dir", state, "--no-context"],
            environment: ["PATH": "/usr/bin:/bin"])
        #expect(initialised.status == 0 && initialised.stdout.contains("CA fingerprint"), "\(initialised.stderr)")

        // One page per command, each well-formed, written from the command's own flags.
        let pages = try FileManager.default.contentsOfDirectory(atPath: prefix.path + "/share/man/man1")
        #expect(pages.count >= 30, "\(pages)")
        for page in pages {
            let warnings = try await Self.manualWarnings(prefix.appendingPathComponent("share/man/man1/" + page))
            #expect(warnings.isEmpty, "\(page): \(warnings)")
        }
        let submit = try await runCommand(
            "man", ["-P", "cat", "manifold.build.submit"],
            environment: ["MANPATH": prefix.path + "/share/man", "MANWIDTH": "100"])
        #expect(submit.status == 0, "\(submit.stderr)")
        for flag in ["--watch", "--secret", "--platform", "RUN --mount=type=secret"] {
            #expect(submit.stdout.contains(flag), "man manifold.build.submit does not mention \(flag):\n\(submit.stdout)")
        }
        // The coordinator's commands are documented from the CLI, with the options `manifold-coordinator` parses.
        let serve = try await runCommand(
            "man", ["-P", "cat", "manifold.serve"], environment: ["MANPATH": prefix.path + "/share/man", "MANWIDTH": "100"])
        #expect(serve.status == 0 && serve.stdout.contains("--database") && serve.stdout.contains("SIGTERM"), "\(serve.stdout)")

        // Completions in the three shells complete subcommands.
        let bash = prefix.appendingPathComponent("share/bash-completion/completions/manifold")
        await #expect(try Self.bashCompletions("manifold build s", script: bash, command: "manifold") == ["show", "submit"])
        await #expect(
            try Self.bashCompletions("manifold manifest ", script: bash, command: "manifold").isSuperset(of: [
                "create", "inspect",
            ]))
        let fish = try await runChecked(
            "fish",
            [
                "--no-config", "-c",
                "source \(prefix.path)/share/fish/vendor_completions.d/manifold.fish; complete -C 'manifold build s'",
            ])
        #expect(fish.contains("submit") && fish.contains("show"), "\(fish)")
        let zsh = try await runChecked(
            "zsh",
            [
                "-f", "-c",
                "fpath=(\(prefix.path)/share/zsh/site-functions $fpath); autoload -Uz compinit; compinit -u -D; "
                    + "print -r -- ${_comps[manifold]}",
            ])
        #expect(zsh.trimmingCharacters(in: .whitespacesAndNewlines) == "_manifold", "\(zsh)")

        // The unit runs the installed executable.
        let unit = try String(contentsOf: prefix.appendingPathComponent("lib/systemd/system/manifold.service"), encoding: .utf8)
        #expect(unit.contains("ExecStart=/usr/local/bin/manifold serve"))
    }

    @Test func theAgentPackageHasItsManualPagesCompletionsAndSetUp() async throws {
        let scratch = try ScratchDirectory(prefix: "manifold-agent-package")
        defer { scratch.remove() }
        let prefix = scratch.file("usr-local")
        let entries = try await Self.packageAndInstall(script: "agent/package.sh", scratch: scratch, prefix: prefix)
        for expected in [
            "bin/manifold-agent", "share/man/man1/manifold-agent.1", "share/man/man1/manifold-agent.run.1",
            "share/man/man1/manifold-agent.join.1", "share/bash-completion/completions/manifold-agent",
            "share/zsh/site-functions/_manifold-agent", "share/fish/vendor_completions.d/manifold-agent.fish",
            "lib/systemd/system/manifold-agent.service", "share/doc/manifold-agent/agent.conf.example",
            "share/doc/manifold-agent/setup-rootless.sh",
        ] {
            #expect(entries.contains(expected), "\(expected) is missing from the package: \(entries)")
        }
        #expect(!entries.contains("bin/manifold"), "the agent's package holds only the agent: \(entries)")
        #expect(
            FileManager.default.isExecutableFile(atPath: prefix.path + "/share/doc/manifold-agent/setup-rootless.sh"))
        let run = try await runCommand(
            "man", ["-P", "cat", "manifold-agent.run"],
            environment: ["MANPATH": prefix.path + "/share/man", "MANWIDTH": "100"])
        #expect(run.status == 0 && run.stdout.contains("--builder"), "\(run.stderr)\(run.stdout)")
        let bash = prefix.appendingPathComponent("share/bash-completion/completions/manifold-agent")
        await #expect(try Self.bashCompletions("manifold-agent j", script: bash, command: "manifold-agent") == ["join"])
        await #expect(
            try Self.bashCompletions("manifold-agent ", script: bash, command: "manifold-agent").isSuperset(of: [
                "join", "run", "doctor",
            ]))
    }

    @Test func theCLIPackageHoldsTheCLIAloneWithItsPagesAndCompletions() async throws {
        let scratch = try ScratchDirectory(prefix: "manifold-cli-package")
        defer { scratch.remove() }
        let prefix = scratch.file("usr-local")
        let entries = try await Self.packageAndInstall(
            script: "coordinator/package.sh", ["--cli-only", "manifold"], scratch: scratch, prefix: prefix)
        for expected in [
            "bin/manifold", "share/man/man1/manifold.build.submit.1", "share/bash-completion/completions/manifold",
            "share/zsh/site-functions/_manifold", "share/fish/vendor_completions.d/manifold.fish",
            "share/doc/manifold/README.md",
        ] {
            #expect(entries.contains(expected), "\(expected) is missing from the package: \(entries)")
        }
        for absent in ["bin/manifold-coordinator", "lib/systemd/system/manifold.service"] {
            #expect(!entries.contains(absent), "the CLI's package holds \(absent): \(entries)")
        }
        let cli = prefix.appendingPathComponent("bin/manifold").path
        let version = try await runChecked(cli, ["--version"])
        await #expect(version == (try runChecked(try manifoldBinary(), ["--version"])))
        // Without the coordinator's executable beside it, `manifold serve` says so and where it looked.
        let serve = try await runCommand(cli, ["serve", "--state-dir", scratch.file("state").path])
        #expect(
            serve.status == 1 && serve.stderr.contains("manifold-coordinator, which is not in \(prefix.path)/bin"),
            "\(serve.status) \(serve.stderr)")
        let bash = prefix.appendingPathComponent("share/bash-completion/completions/manifold")
        await #expect(try Self.bashCompletions("manifold build s", script: bash, command: "manifold") == ["show", "submit"])
    }

    @Test func aWrongArgumentIsNamedWithWhatWouldBeRight() async throws {
        let result = try await runCommand(Self.repository.appendingPathComponent("coordinator/package.sh").path, ["manifold-cli"])
        #expect(result.status == 64)
        #expect(
            result.stderr.contains("'manifold-cli'") && result.stderr.contains("manifold|manifold-agent"), "\(result.stderr)")
        let agentAlone = try await runCommand(
            Self.repository.appendingPathComponent("coordinator/package.sh").path, ["--cli-only", "manifold-agent"])
        #expect(agentAlone.status == 64 && agentAlone.stderr.contains("--cli-only"), "\(agentAlone.stderr)")
    }
}
