import ArgumentParser
import Foundation
import Logging
import ManifoldAPI
import ManifoldClient

/// `manifold-agent doctor`: what stands between this host and its first job.
struct DoctorCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "doctor",
        abstract: "Checks the coordinator, the credential and the builders, and says what to fix.",
        discussion: """
            Example:
              manifold-agent doctor --state-dir /var/lib/manifold-agent
            Exits non-zero when any check fails. Also warns (WARN, without failing) when builds would get more of \
            the host than they need: the agent running as root (or elevated / LocalSystem on Windows), buildah or \
            podman with --isolation=chroot, or a builder that uses the root-equivalent Docker socket.
            """)

    @OptionGroup var state: StateOptions

    @Option(help: "Check only this builder (default: the configured one, then every builder found).")
    var builder: String?

    func run() async throws {
        let environment = ProcessInfo.processInfo.environment
        let settings = try resolveSettings(state: state, environment: environment) { _ in }
        let directory = StateDirectory(path: settings.stateDirectory)
        print(
            Self.privilegeReport(
                identity: HostSystem.currentIdentity(), settings: settings, environment: environment,
                windows: HostSystem.detect().os == "windows"),
            terminator: "")
        var problems = 0
        func check(_ ok: Bool, _ what: String, fix: String) {
            print("\(ok ? "ok  " : "FAIL") \(what)")
            if !ok {
                print("     fix: \(fix)")
                problems += 1
            }
        }
        let credential: AgentCredential
        do {
            credential = try directory.loadCredential()
            check(true, "credential for agent \(credential.name) in \(directory.url.path)", fix: "")
        } catch {
            check(false, "credential", fix: "\(error)")
            throw ExitCode(1)
        }
        let client = AgentRunner.client(credential, state: directory, logger: Logger(label: "manifold.agent.doctor"))
        do {
            _ = try await client.caCertificate()
            check(true, "coordinator \(credential.coordinatorURL.absoluteString) reachable with the stored CA", fix: "")
        } catch {
            check(
                false, "coordinator reachable",
                fix: "\(error). Check the network, the URL, and that \(directory.caFile.path) is the coordinator's CA.")
        }
        do {
            // A heartbeat for a job this agent does not hold: 401/403 means the credential is refused; any other
            // answer (404, 409) means it was accepted.
            _ = try await client.heartbeat(HeartbeatRequest(jobId: "doctor-check", epoch: 0))
            check(true, "credential accepted", fix: "")
        } catch let error as CoordinatorClientError where error.status == 401 || error.status == 403 {
            check(false, "credential accepted", fix: "it was refused (\(error)); run `manifold-agent join` again")
        } catch let error as CoordinatorClientError where error.status != nil {
            check(true, "credential accepted", fix: "")
        } catch {
            check(false, "credential accepted", fix: "\(error)")
        }
        let found = await HostDescription.detectBuilders()
        let wanted = builder.map { [$0] } ?? [settings.builder]
        for name in wanted {
            let (ok, detail) = await Self.probe(name, settings: settings)
            check(
                ok, "builder \(name): \(detail)",
                fix: "install \(name) or choose another with --builder (found: \(found.joined(separator: ", ")))")
        }
        print(
            "platforms: \((try? HostDescription.platforms(from: settings.platforms))?.map(\.description).joined(separator: ", ") ?? "invalid")"
        )
        if problems > 0 { throw ExitCode(1) }
    }

    /// The account line and one `WARN` block per ``PrivilegeAdvice`` warning.
    static func privilegeReport(
        identity: AgentAccount, settings: AgentSettings, environment: [String: String], windows: Bool
    ) -> String {
        var report = "user: \(identity.name)\n"
        for warning in PrivilegeAdvice.warnings(
            identity: identity, settings: settings, environment: environment, windows: windows)
        {
            report += "WARN \(warning.what)\n     why: \(warning.why)\n     fix: \(warning.fix)\n"
        }
        return report
    }

    static func probe(_ name: String, settings: AgentSettings) async -> (Bool, String) {
        let (executable, arguments): (String, [String])
        switch BuilderKind(rawValue: name) {
        case .docker: (executable, arguments) = ("docker", ["version", "--format", "{{.Server.Version}}"])
        case .buildx: (executable, arguments) = ("docker", ["buildx", "version"])
        case .buildah: (executable, arguments) = ("buildah", settings.globalArguments + ["info"])
        case .podman: (executable, arguments) = ("podman", settings.globalArguments + ["info"])
        case .command:
            guard let command = settings.command else { return (false, "no --command configured") }
            return (ExecutableLocator.find(command) != nil, ExecutableLocator.find(command) ?? "\(command) not found")
        case nil: return (false, "unknown builder")
        }
        let result = await ProcessRunner.capture(executable, arguments)
        let firstLine = result.output.split(separator: "\n").first.map(String.init) ?? ""
        return (result.status == 0, result.status == 0 ? "works" : "exit \(result.status): \(firstLine)")
    }
}
