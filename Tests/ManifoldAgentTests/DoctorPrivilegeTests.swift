import Foundation
import Testing

@testable import ManifoldAgent

#if canImport(Glibc)
import Glibc
#endif

/// `doctor`'s privilege warnings, for the account it really runs as (root here) and for injected ones.
@Suite struct DoctorPrivilegeTests {
    static let rootless = AgentAccount(name: "manifold-agent (uid 998)", isPrivileged: false, groups: ["manifold-agent"])
    static let root = AgentAccount(name: "root (uid 0)", isPrivileged: true, groups: ["root"])

    private func settings(_ builder: String, _ arguments: [String] = []) -> AgentSettings {
        var settings = AgentSettings(stateDirectory: "/var/lib/manifold-agent")
        settings.builder = builder
        settings.builderArguments = arguments
        return settings
    }

    @Test func theRealAccountIsReportedAndRootIsWarnedAbout() {
        let identity = HostSystem.currentIdentity()
        #expect(identity.isPrivileged == (geteuid() == 0))
        let report = DoctorCommand.privilegeReport(
            identity: identity, settings: settings("buildah"), environment: [:], windows: false)
        if geteuid() == 0 {
            #expect(report.contains("user: root (uid 0)"), "\(report)")
            #expect(report.contains("WARN the agent runs as root (uid 0)"), "\(report)")
            #expect(report.contains("fix: run it as the unprivileged manifold-agent user"), "\(report)")
        } else {
            #expect(!report.contains("WARN the agent runs as"), "\(report)")
        }
    }

    @Test func anUnprivilegedRootlessAgentGetsNoWarning() {
        let report = DoctorCommand.privilegeReport(
            identity: Self.rootless, settings: settings("buildah"), environment: [:], windows: false)
        #expect(report == "user: manifold-agent (uid 998)\n")
        #expect(
            PrivilegeAdvice.warnings(identity: Self.rootless, settings: settings("podman"), environment: [:], windows: false)
                .isEmpty)
    }

    @Test(arguments: [
        (["--isolation=chroot"], [String: String]()),
        (["--isolation", "chroot"], [:]),
        ([], ["BUILDAH_ISOLATION": "chroot"]),
    ])
    func chrootIsolationIsWarnedAbout(arguments: [String], environment: [String: String]) {
        let rootless = PrivilegeAdvice.warnings(
            identity: Self.rootless, settings: settings("buildah", arguments), environment: environment, windows: false)
        #expect(rootless.map(\.what) == ["buildah uses --isolation=chroot"])
        #expect(!rootless[0].why.contains("as root"))
        let asRoot = PrivilegeAdvice.warnings(
            identity: Self.root, settings: settings("buildah", arguments), environment: environment, windows: false)
        #expect(asRoot.count == 2)
        #expect(asRoot[1].why.contains("here they run as root"))
        // An explicit other isolation after a chroot one wins, as it does for buildah.
        let overridden = PrivilegeAdvice.warnings(
            identity: Self.rootless, settings: settings("buildah", arguments + ["--isolation=oci"]),
            environment: environment, windows: false)
        #expect(overridden.isEmpty)
    }

    @Test func theDockerSocketIsRootEquivalent() {
        let docker = PrivilegeAdvice.warnings(
            identity: Self.rootless, settings: settings("docker"), environment: [:], windows: false)
        #expect(docker.map(\.what) == ["the docker builder talks to the Docker daemon"])
        #expect(docker[0].why.contains("root-equivalent"))
        let rootlessDocker = PrivilegeAdvice.warnings(
            identity: Self.rootless, settings: settings("buildx"),
            environment: ["DOCKER_HOST": "unix:///run/user/998/docker.sock"], windows: false)
        #expect(rootlessDocker.isEmpty)
        let member = AgentAccount(name: "builder (uid 1000)", isPrivileged: false, groups: ["builder", "docker"])
        let group = PrivilegeAdvice.warnings(identity: member, settings: settings("buildah"), environment: [:], windows: false)
        #expect(group.map(\.what) == ["builder (uid 1000) is in the docker group"])
    }

    @Test func windowsWarnsWhenElevatedOrLocalSystem() {
        let system = AgentAccount(name: "LocalSystem", isPrivileged: true, groups: [])
        let report = DoctorCommand.privilegeReport(
            identity: system, settings: settings("docker"), environment: [:], windows: true)
        #expect(report.contains("WARN the agent runs as LocalSystem"), "\(report)")
        #expect(!report.contains("Docker daemon"), "the docker group warning is Linux-only: \(report)")
        let plain = AgentAccount(name: "an unelevated account", isPrivileged: false, groups: [])
        #expect(
            PrivilegeAdvice.warnings(identity: plain, settings: settings("docker"), environment: [:], windows: true).isEmpty)
    }
}
