import ArgumentParser
import Foundation
import Logging
import ManifoldClient
import ManifoldCore
import ManifoldHTTP

/// `--use-context NAME` and the `MANIFOLD_COORDINATOR`, `MANIFOLD_TOKEN`, `MANIFOLD_CA_FILE` overrides, shared by every
/// command that talks to a coordinator.
struct CoordinatorOptions: ParsableArguments {
    @Option(
        name: .customLong("use-context"),
        help: ArgumentHelp(
            "The stored coordinator context to use (default: $MANIFOLD_CONTEXT, else the current one; see `manifold context list`).",
            valueName: "name"))
    var contextName: String?

    @Flag(name: .shortAndLong, help: "Log each request to stderr.")
    var verbose = false

    /// The connection these options, the environment and the stored contexts describe.
    func resolve(environment: [String: String] = ProcessInfo.processInfo.environment) throws -> CoordinatorContext {
        let stored = try ContextStore(environment: environment).context(named: contextName ?? environment["MANIFOLD_CONTEXT"])
        let url = environment["MANIFOLD_COORDINATOR"].flatMap { $0.isEmpty ? nil : $0 } ?? stored?.context.coordinator
        let token = environment["MANIFOLD_TOKEN"].flatMap { $0.isEmpty ? nil : $0 } ?? stored?.context.token
        guard let url else {
            throw CLIError(
                "no coordinator is configured: run `manifold login URL --token TOKEN --ca-fingerprint sha256:…` "
                    + "or set MANIFOLD_COORDINATOR and MANIFOLD_TOKEN")
        }
        guard let token else {
            throw CLIError("no token for \(url): set MANIFOLD_TOKEN or run `manifold login \(url) --token TOKEN …`")
        }
        // A CA only belongs to the coordinator it was stored for.
        let sameCoordinator = stored?.context.coordinator == url
        let caFile =
            environment["MANIFOLD_CA_FILE"].flatMap { $0.isEmpty ? nil : $0 } ?? (sameCoordinator ? stored?.context.caFile : nil)
        return CoordinatorContext(coordinator: url, token: token, caFile: caFile)
    }

    /// A client for the resolved coordinator.
    func client() throws -> CoordinatorClient {
        let context = try resolve()
        return try Self.client(for: context, verbose: verbose)
    }

    static func client(for context: CoordinatorContext, verbose: Bool = false) throws -> CoordinatorClient {
        let urls = try coordinatorURLs(context.coordinator)
        if let caFile = context.caFile, !FileManager.default.isReadableFile(atPath: caFile) {
            throw CLIError("the coordinator's CA file \(caFile) cannot be read; log in again or fix MANIFOLD_CA_FILE")
        }
        var logger = Logger(label: "manifold.client") { StreamLogHandler.standardError(label: $0) }
        logger.logLevel = verbose ? .debug : .warning
        return CoordinatorClient(
            baseURLs: urls, token: context.token, tls: TLSConfiguration(caFile: context.caFile),
            userAgent: "manifold/\(ManifoldCLI.version)", logger: logger)
    }

    /// Parses the coordinator's URLs: one, or several replicas separated by commas, which the client fails over
    /// between (`https://a.example:7443,https://b.example:7443`).
    static func coordinatorURLs(_ text: String) throws -> [URL] {
        let urls = try text.split(separator: ",").map { try coordinatorURL($0.trimmingCharacters(in: .whitespaces)) }
        guard !urls.isEmpty else {
            throw CLIError("\"\(text)\" is not a coordinator URL; give one like https://ci.example.com:8443")
        }
        return urls
    }

    /// Parses a coordinator URL: `https://host:port` (a bare `host:port` means https).
    static func coordinatorURL(_ text: String) throws -> URL {
        let withScheme = text.contains("://") ? text : "https://" + text
        guard let url = URL(string: withScheme), let scheme = url.scheme?.lowercased(), ["https", "http"].contains(scheme),
            url.host != nil
        else {
            throw CLIError("\"\(text)\" is not a coordinator URL; give one like https://ci.example.com:8443")
        }
        return url
    }
}

/// The CLI's flag-level wrapper around `CoordinatorTrust`'s fingerprints.
enum CertificateFingerprint {
    static func sha256(ofPEM pem: Data) throws -> String {
        do { return try CoordinatorTrust.fingerprint(ofPEM: pem) } catch { throw CLIError(error.description) }
    }

    /// `sha256:HEX` in lower case, or a usage error naming the flag.
    static func normalized(_ value: String) throws -> String {
        guard let normalized = CoordinatorTrust.normalizedFingerprint(value) else {
            throw ValidationError("--ca-fingerprint must be sha256: followed by 64 hex digits, as `manifold init` printed it")
        }
        return normalized
    }
}
