import Foundation
import ManifoldCore

/// Which git URLs this agent clones, and the `GIT_ALLOW_PROTOCOL` that keeps git itself (redirects, submodules,
/// remote helpers) to the same transports.
///
/// `https://` always; `http://` only when the admin allows it (`allow_http_git`: the source can be changed on the
/// way); `ssh://HOST/…`, `git+ssh://`, and `user@HOST:path` only for hosts in `allow_ssh_git_host`, because git
/// authenticates with this host's own ssh keys and agent. Everything else — `file://`, local paths, `git://`,
/// `ext::` and other `transport::` remote helpers — is refused.
struct GitSourcePolicy: Sendable, Hashable {
    var allowHTTP = false
    var sshHosts: [RegistryPattern] = []

    enum Transport: String, Sendable {
        case https, http, ssh
    }

    /// The transport of `url`, if it is allowed; otherwise an error saying which setting would allow it.
    func check(_ url: String) throws(AgentError) -> Transport {
        guard !url.hasPrefix("-"), !url.contains(where: { $0.isWhitespace || $0.asciiValue.map { $0 < 0x20 } == true })
        else {
            throw AgentError("the git URL \"\(url)\" is refused: it starts with \"-\" or contains spaces or controls")
        }
        let lower = url.lowercased()
        if lower.hasPrefix("https://") { return .https }
        if lower.hasPrefix("http://") {
            guard allowHTTP else {
                throw AgentError(
                    "the git URL \"\(url)\" is refused: plain http:// lets anyone on the path change the source; use "
                        + "https://, or set allow_http_git = true in the agent's settings if the network is trusted")
            }
            return .http
        }
        let host: String
        if let scheme = ["ssh://", "git+ssh://", "ssh+git://"].first(where: lower.hasPrefix) {
            // ssh://[user@]host[:port]/path
            let authority = url.dropFirst(scheme.count).prefix { $0 != "/" }
            let hostPort = authority.split(separator: "@", omittingEmptySubsequences: false).last.map(String.init) ?? ""
            host = hostPort
        } else if let scpHost = Self.scpLikeHost(url) {
            host = scpHost
        } else {
            throw AgentError(
                "the git URL \"\(url)\" is refused: only https://, http:// (when allowed) and ssh to allowed hosts "
                    + "(ssh://HOST/PATH or user@HOST:PATH) are cloned; file://, local paths, git:// and transport:: "
                    + "helpers never are")
        }
        guard !host.isEmpty, !host.hasPrefix("-"), !host.hasPrefix("[") || host.contains("]") else {
            throw AgentError("the git URL \"\(url)\" is refused: it has no usable ssh host")
        }
        guard RegistryPattern.allows(sshHosts, registry: host) else {
            let allowed = sshHosts.isEmpty ? "none is allowed" : "allowed: " + sshHosts.map(\.description).joined(separator: ", ")
            throw AgentError(
                "the git URL \"\(url)\" is refused: ssh clones use this agent's own keys, so only hosts an admin lists "
                    + "in allow_ssh_git_host are cloned over ssh (\(allowed)); use an https:// URL or allow the host")
        }
        return .ssh
    }

    /// The host of an scp-like address `[user@]host:path` (git's rule: a colon before any slash, and not a
    /// `transport::address` remote helper), or nil.
    static func scpLikeHost(_ url: String) -> String? {
        guard !url.contains("://"), !url.contains("::"), let colon = url.firstIndex(of: ":") else { return nil }
        let before = url[..<colon]
        guard !before.contains("/"), !before.isEmpty else { return nil }
        // C:\repo or C:/repo is a Windows path, not host "C".
        if before.count == 1, before.first?.isLetter == true { return nil }
        let host = before.split(separator: "@", omittingEmptySubsequences: false).last.map(String.init) ?? ""
        return host.isEmpty ? nil : host
    }

    /// `GIT_ALLOW_PROTOCOL` for a clone of `transport`: only that transport.
    static func allowedProtocols(for transport: Transport) -> String {
        transport.rawValue
    }
}
