import ArgumentParser
import Foundation
import Logging
import ManifoldAPI
import ManifoldClient
import ManifoldCore
import ManifoldHTTP

/// `manifold-agent join`: pin the coordinator's CA and register this host.
struct JoinCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "join",
        abstract: "Registers this host with a coordinator and stores its credential.",
        discussion: """
            Fetches the coordinator's CA certificate, refuses it unless its SHA-256 fingerprint matches the one \
            `manifold init` printed, then joins with the join token and stores the CA and the agent credential in \
            the state directory, readable only by its owner. Prefer --token-file (a path, or - for standard input) \
            to --token: a token on the command line is visible to every user of the host in the process list. A \
            plain http:// URL is refused unless --insecure is given.

            Example:
              manifold-agent join https://ci.example.com:8443 --token-file /root/join-token \\
                  --ca-fingerprint sha256:3b1f… --state-dir /var/lib/manifold-agent --name arm-builder-1 \\
                  --label pool=arm
            """)

    @Argument(
        help: ArgumentHelp(
            "The coordinator's URL, e.g. https://ci.example.com:8443; for replicas reached directly, several URLs "
                + "separated by commas (the agent fails over between them).", valueName: "url[,url…]"))
    var coordinator: String

    @Option(help: "The agent join token printed by `manifold init` or `manifold token create`.")
    var token: String?

    @Option(
        name: .customLong("token-file"),
        help: ArgumentHelp("Read the join token from this file, or from standard input with -.", valueName: "path"))
    var tokenFile: String?

    @Flag(help: "Allow a plain http:// coordinator URL: the join token and the credential then cross the network unencrypted.")
    var insecure = false

    @Option(name: .customLong("ca-fingerprint"), help: "sha256:HEX of the coordinator CA, as `manifold init` printed it.")
    var caFingerprint: String

    @OptionGroup var state: StateOptions

    @Option(help: "This agent's name; defaults to the host name.")
    var name: String?

    @Option(name: .customLong("label"), help: ArgumentHelp("A label key=value; repeatable.", valueName: "key=value"))
    var labels: [String] = []

    @Option(name: .customLong("platform"), help: "A platform this host offers; repeatable. Default: detected.")
    var platforms: [String] = []

    func validate() throws {
        switch (token, tokenFile) {
        case (.some, .some): throw ValidationError("give --token or --token-file, not both")
        case (.none, .none): throw ValidationError("give --token-file PATH (- for standard input) or --token TOKEN")
        default: break
        }
    }

    func run() async throws {
        let logger = Logger(label: "manifold.agent")
        let directory = StateDirectory(path: try state.resolvedStateDirectory())
        var urls: [URL] = []
        for text in coordinator.split(separator: ",").map({ $0.trimmingCharacters(in: .whitespaces) }) {
            guard let url = URL(string: text), let scheme = url.scheme, ["https", "http"].contains(scheme) else {
                throw ValidationError("\(text) is not an http(s) URL")
            }
            try CoordinatorURLPolicy.check(url, insecure: insecure)
            urls.append(url)
        }
        guard let url = urls.first else { throw ValidationError("give the coordinator's URL, e.g. https://ci.example.com:8443") }
        let token = try tokenFile.map { path throws(TokenFileError) in try TokenFile.read(path) } ?? self.token ?? ""

        guard let expected = CoordinatorTrust.normalizedFingerprint(caFingerprint) else {
            throw ValidationError("--ca-fingerprint must be sha256: followed by 64 hex digits, as `manifold init` printed it")
        }
        try directory.prepare()
        let pem = try await CoordinatorTrust.fetchPinnedCA(
            from: urls, fingerprint: expected, userAgent: "manifold-agent/\(AgentVersion.current)")
        try directory.writePrivate(pem, to: directory.caFile)
        var labelMap: [String: String] = [:]
        for label in labels {
            let (key, value) = try AgentSettings.label(label, origin: "--label")
            labelMap[key] = value
        }
        let platformList = try HostDescription.platforms(from: platforms)
        let builders = await HostDescription.detectBuilders()
        let hostName = name ?? ProcessInfo.processInfo.hostName
        let client = CoordinatorClient(
            baseURLs: urls, token: token, tls: TLSConfiguration(caFile: directory.caFile.path),
            userAgent: "manifold-agent/\(AgentVersion.current)", logger: logger)
        let joined = try await client.join(
            JoinRequest(
                name: hostName, platforms: platformList, labels: labelMap, builders: builders,
                version: AgentVersion.current))
        try directory.saveCredential(
            AgentCredential(
                coordinatorURL: url, alternateURLs: urls.count > 1 ? Array(urls.dropFirst()) : nil, agentId: joined.agentId,
                secret: joined.secret, name: hostName,
                leaseTTLSeconds: joined.leaseTTLSeconds, heartbeatIntervalSeconds: joined.heartbeatIntervalSeconds,
                caFingerprint: expected))
        print("Joined \(urls.map(URLRedaction.display).joined(separator: ", ")) as \(hostName) (agent \(joined.agentId)).")
        print("Platforms: \((joined.platforms ?? platformList).map(\.description).joined(separator: ", "))")
        if let pool = joined.pool {
            let labels = (joined.labels ?? [:]).sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }
            print("Pool: \(pool); labels: \(labels.isEmpty ? "none" : labels.joined(separator: ", "))")
            print("These labels and platforms are fixed: later runs may offer fewer, never more (join again for more).")
        }
        print("Builders found: \(builders.joined(separator: ", "))")
        print("Credential and CA stored in \(directory.url.path).")
        print("Next: manifold-agent run --state-dir \(directory.url.path) --builder \(builders.first ?? "command")")
    }
}
