import Foundation
import ManifoldCore

/// Everything `manifold-agent run` can be told, resolved with the precedence flags > environment
/// (`MANIFOLD_AGENT_*`) > config file > defaults.
///
/// The config file holds `key = value` lines (`#` starts a comment); list settings (`platform`, `label`,
/// `builder_arg`, `redact`) may repeat. The environment variable of a key is `MANIFOLD_AGENT_` + the key in upper
/// case; list variables hold comma-separated values.
public struct AgentSettings: Sendable, Hashable {
    public var stateDirectory: String
    /// Platforms offered; empty means the detected host platform.
    public var platforms: [String] = []
    public var builder: String = "buildah"
    /// Arguments after the build subcommand (`--isolation chroot`), or the command builder's arguments.
    public var builderArguments: [String] = []
    /// buildah/podman: arguments before every subcommand (`--root DIR --storage-driver vfs`).
    public var globalArguments: [String] = []
    /// buildah/podman: arguments after `push` (`--cert-dir DIR`, `--tls-verify=false`).
    public var pushArguments: [String] = []
    /// The executable of the `command` builder.
    public var command: String?
    public var labels: [String: String] = [:]
    /// Seconds the first SIGTERM waits for the current job before cancelling it.
    public var drainTimeoutSeconds: Int = 3600
    /// Seconds between the terminate signal and the kill when a build is stopped.
    public var killGraceSeconds: Int = 10
    /// Where per-job work directories are created; defaults to `STATE/work`.
    public var workDirectory: String?
    /// The largest context (sum of file sizes) the agent unpacks.
    public var maxContextBytes: Int64 = 4 << 30
    /// Literal strings redacted from logs in addition to secret build-arg values.
    public var redactions: [String] = []
    /// Log upload batch size in bytes.
    public var logBatchBytes: Int = 256 * 1024
    /// The most builder output one job's log spool keeps on disk; past it one marker line is written and the rest
    /// dropped. Default 64 MiB, the coordinator's default per-attempt log limit.
    public var maxSpoolBytes: Int64 = LogSpool.defaultMaxBytes
    /// Hosts (`HOST`, `HOST:PORT`, `*.DOMAIN`) whose git repositories may be cloned over ssh, with this host's own
    /// ssh keys. Empty (the default): no ssh clones.
    public var allowedSSHGitHosts: [RegistryPattern] = []
    /// Whether git contexts may be cloned over plain `http://`. Default false: https only.
    public var allowHTTPGit = false

    /// The git transports these settings allow.
    var gitSourcePolicy: GitSourcePolicy {
        GitSourcePolicy(allowHTTP: allowHTTPGit, sshHosts: allowedSSHGitHosts)
    }

    public init(stateDirectory: String) {
        self.stateDirectory = stateDirectory
    }

    /// The keys a config file or the environment may set.
    public static let keys = [
        "state_dir", "platform", "builder", "builder_arg", "global_arg", "push_arg", "command", "label", "drain_timeout",
        "kill_grace",
        "work_dir", "max_context_bytes", "redact", "log_batch_bytes", "max_spool_bytes", "allow_ssh_git_host",
        "allow_http_git",
    ]

    /// Applies `key = value` (from a file or the environment); list keys append.
    mutating func apply(key: String, value: String, origin: String) throws(AgentSettingsError) {
        func integer() throws(AgentSettingsError) -> Int {
            guard let number = Int(value), number >= 0 else {
                throw AgentSettingsError("\(origin): \(key) must be a non-negative integer, not \"\(value)\"")
            }
            return number
        }
        switch key {
        case "state_dir": stateDirectory = value
        case "platform": platforms.append(value)
        case "builder":
            guard BuilderKind(rawValue: value) != nil else {
                throw AgentSettingsError(
                    "\(origin): builder \"\(value)\" is not one of \(BuilderKind.allCases.map(\.rawValue).joined(separator: ", "))"
                )
            }
            builder = value
        case "builder_arg": builderArguments.append(value)
        case "global_arg": globalArguments.append(value)
        case "push_arg": pushArguments.append(value)
        case "command": command = value
        case "label":
            let (name, labelValue) = try Self.label(value, origin: origin)
            labels[name] = labelValue
        case "drain_timeout": drainTimeoutSeconds = try integer()
        case "kill_grace": killGraceSeconds = try integer()
        case "work_dir": workDirectory = value
        case "max_context_bytes": maxContextBytes = Int64(try integer())
        case "redact": redactions.append(value)
        case "log_batch_bytes": logBatchBytes = max(1024, try integer())
        case "max_spool_bytes": maxSpoolBytes = Int64(try integer())
        case "allow_ssh_git_host":
            do {
                allowedSSHGitHosts.append(try RegistryPattern(parsing: value))
            } catch {
                throw AgentSettingsError("\(origin): allow_ssh_git_host \"\(value)\": \(error.reason)")
            }
        case "allow_http_git":
            switch value.lowercased() {
            case "true", "yes", "on", "1": allowHTTPGit = true
            case "false", "no", "off", "0": allowHTTPGit = false
            default: throw AgentSettingsError("\(origin): allow_http_git must be true or false, not \"\(value)\"")
            }
        default:
            throw AgentSettingsError("\(origin): unknown setting \"\(key)\"; known: \(Self.keys.joined(separator: ", "))")
        }
    }

    static func label(_ text: String, origin: String) throws(AgentSettingsError) -> (String, String) {
        guard let equals = text.firstIndex(of: "="), equals != text.startIndex else {
            throw AgentSettingsError("\(origin): label \"\(text)\" must look like key=value")
        }
        return (String(text[..<equals]), String(text[text.index(after: equals)...]))
    }

    /// Reads a config file into `self`, reporting the line of any error.
    mutating func load(file path: String) throws(AgentSettingsError) {
        let text: String
        do {
            text = try String(contentsOfFile: path, encoding: .utf8)
        } catch {
            throw AgentSettingsError("cannot read config file \(path): \(error.localizedDescription)")
        }
        for (index, rawLine) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let line = rawLine.trimmingCharacters(in: .whitespaces)
            if line.isEmpty || line.hasPrefix("#") { continue }
            let origin = "\(path):\(index + 1)"
            guard let equals = line.firstIndex(of: "=") else {
                throw AgentSettingsError("\(origin): expected key = value, got \"\(line)\"")
            }
            let key = line[..<equals].trimmingCharacters(in: .whitespaces)
            var value = line[line.index(after: equals)...].trimmingCharacters(in: .whitespaces)
            if value.count >= 2, value.hasPrefix("\""), value.hasSuffix("\"") { value = String(value.dropFirst().dropLast()) }
            try apply(key: key, value: value, origin: origin)
        }
    }

    /// Reads `MANIFOLD_AGENT_*` variables; a list variable replaces the file's list.
    mutating func load(environment: [String: String]) throws(AgentSettingsError) {
        for key in Self.keys {
            guard let value = environment["MANIFOLD_AGENT_" + key.uppercased()], !value.isEmpty else { continue }
            let origin = "MANIFOLD_AGENT_" + key.uppercased()
            switch key {
            case "platform", "builder_arg", "global_arg", "push_arg", "label", "redact", "allow_ssh_git_host":
                switch key {
                case "platform": platforms = []
                case "builder_arg": builderArguments = []
                case "global_arg": globalArguments = []
                case "push_arg": pushArguments = []
                case "label": labels = [:]
                case "allow_ssh_git_host": allowedSSHGitHosts = []
                default: redactions = []
                }
                for item in value.split(separator: ",") {
                    try apply(key: key, value: item.trimmingCharacters(in: .whitespaces), origin: origin)
                }
            default:
                try apply(key: key, value: value, origin: origin)
            }
        }
    }
}

/// A setting that cannot be used, with where it came from.
public struct AgentSettingsError: Error, CustomStringConvertible, Sendable {
    public let description: String
    public init(_ description: String) { self.description = description }
}
