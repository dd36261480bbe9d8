import Foundation

/// The account the agent runs as, as `doctor` reports it.
struct AgentAccount: Sendable, Hashable {
    /// `root (uid 0)`, `manifold-agent (uid 998)`, `LocalSystem`, …
    var name: String
    /// Root on Linux; an elevated administrator or LocalSystem on Windows.
    var isPrivileged: Bool
    /// Group names (Linux), to spot membership of `docker`.
    var groups: [String]
}

/// What `doctor` warns about in how the agent and its builder are privileged. A build runs code from whoever could
/// submit it; these say when that code would get more of the host than a build needs.
///
/// Warnings never fail `doctor` (a host may have chosen the trade-off knowingly), but each is printed as a
/// `WARN` block with the reason and the fix.
enum PrivilegeAdvice {
    struct Warning: Sendable, Hashable {
        var what: String
        var why: String
        var fix: String
    }

    static func warnings(
        identity: AgentAccount, settings: AgentSettings, environment: [String: String], windows: Bool
    ) -> [Warning] {
        var warnings: [Warning] = []
        if identity.isPrivileged {
            if windows {
                warnings.append(
                    Warning(
                        what: "the agent runs as \(identity.name)",
                        why: "a build that breaks out of its container gets full control of this host, including the "
                            + "agent's credential",
                        fix: "run the service under a dedicated account that can use the builder but is not an "
                            + "administrator (see agent/README.md, \"Windows\"); dedicate the host to builds otherwise"))
            } else {
                warnings.append(
                    Warning(
                        what: "the agent runs as \(identity.name)",
                        why: "builds then run as root: a build that breaks out of its container owns this host, its "
                            + "other builds and the agent's credential",
                        fix: "run it as the unprivileged manifold-agent user with rootless buildah or podman: "
                            + "agent/setup-rootless.sh, then the shipped manifold-agent.service (User=manifold-agent)"))
            }
        }
        let builder = BuilderKind(rawValue: settings.builder)
        if builder == .buildah || builder == .podman, let isolation = isolation(settings, environment: environment),
            isolation == "chroot"
        {
            warnings.append(
                Warning(
                    what: "\(settings.builder) uses --isolation=chroot",
                    why: "chroot is not a security boundary: RUN steps share this host's process, network and IPC "
                        + "namespaces" + (identity.isPrivileged ? ", and here they run as root" : ""),
                    fix: "drop --isolation=chroot (builder_arg, BUILDAH_ISOLATION) so \(settings.builder) uses its "
                        + "default OCI/rootless isolation; keep chroot only where namespaces are unavailable, such as "
                        + "inside an unprivileged container"))
        }
        if !windows, builder == .docker || builder == .buildx, !usesRootlessDocker(environment) {
            warnings.append(
                Warning(
                    what: "the \(settings.builder) builder talks to the Docker daemon",
                    why: "access to the Docker socket is root-equivalent: any build can start a privileged container "
                        + "that mounts this host's / (and read the agent's credential)",
                    fix: "use rootless Docker (DOCKER_HOST=unix:///run/user/UID/docker.sock) or buildah/podman "
                        + "rootless; otherwise dedicate the host to builds from trusted submitters"))
        } else if !windows, identity.groups.contains("docker"), !identity.isPrivileged {
            warnings.append(
                Warning(
                    what: "\(identity.name) is in the docker group",
                    why: "the docker group can use the Docker socket, which is root-equivalent, so the agent is "
                        + "effectively root",
                    fix: "remove the agent's user from the docker group (gpasswd -d USER docker) unless the docker "
                        + "builder is wanted"))
        }
        return warnings
    }

    /// The isolation buildah/podman will use, from `--isolation=X`/`--isolation X` in builder_arg or
    /// `BUILDAH_ISOLATION`; nil when it is their default.
    static func isolation(_ settings: AgentSettings, environment: [String: String]) -> String? {
        var found: String?
        var arguments = settings.builderArguments[...]
        while let argument = arguments.popFirst() {
            if argument.hasPrefix("--isolation=") {
                found = String(argument.dropFirst("--isolation=".count))
            } else if argument == "--isolation", let value = arguments.popFirst() {
                found = value
            }
        }
        return (found ?? environment["BUILDAH_ISOLATION"])?.lowercased()
    }

    /// A `DOCKER_HOST` that names a per-user socket (rootless Docker) rather than the system daemon.
    static func usesRootlessDocker(_ environment: [String: String]) -> Bool {
        guard let host = environment["DOCKER_HOST"] else { return false }
        return host.hasPrefix("unix:///run/user/") || host.contains("/.docker/run/")
    }
}
