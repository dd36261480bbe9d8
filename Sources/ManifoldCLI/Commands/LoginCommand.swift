import ArgumentParser
import Foundation
import ManifoldClient
import ManifoldHTTP

/// `manifold login`: pin a coordinator's CA, check a token and store them as a context.
struct LoginCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "login",
        abstract: "Connect to a coordinator: pin its CA, check the token and store them as a context.",
        discussion: """
            Fetches the coordinator's CA certificate (GET /api/v1/ca.crt) and refuses it unless its SHA-256 \
            fingerprint is the one `manifold init` printed; or trusts the CA file you give. Then checks that the \
            token is accepted and stores URL, token and CA in $XDG_CONFIG_HOME/manifold (default ~/.config/manifold), \
            readable only by you. MANIFOLD_COORDINATOR, MANIFOLD_TOKEN and MANIFOLD_CA_FILE override the stored \
            context for one command. Prefer --token-file (a path, or - for standard input) to --token: a token on \
            the command line is visible to every user of the host in the process list. A plain http:// URL is \
            refused unless --insecure is given.

            Examples:
              manifold login https://ci.example.com:8443 --token-file ~/.ci-token --ca-fingerprint sha256:3b1f…
              manifold login https://ci.example.com:8443 --token-file - --ca-file ci-ca.crt --context ci < token.txt
              manifold login https://builds.example.com --token mfd_submitter_…      # a certificate your system trusts
            """)

    @Argument(
        help: ArgumentHelp(
            "The coordinator's URL, e.g. https://ci.example.com:8443; several replicas' URLs separated by commas.",
            valueName: "url[,url…]"))
    var coordinator: String

    @Option(help: ArgumentHelp("A user token (admin, submitter or viewer); default MANIFOLD_TOKEN.", valueName: "token"))
    var token: String?

    @Option(
        name: .customLong("token-file"),
        help: ArgumentHelp("Read the token from this file, or from standard input with -.", valueName: "path"))
    var tokenFile: String?

    @Flag(help: "Read the token from standard input (same as --token-file -).")
    var tokenStdin = false

    @Flag(help: "Allow a plain http:// coordinator URL: the token then crosses the network unencrypted.")
    var insecure = false

    @Option(
        name: .customLong("ca-fingerprint"),
        help: ArgumentHelp("sha256:HEX of the coordinator's CA, as `manifold init` printed it.", valueName: "sha256:hex"))
    var caFingerprint: String?

    @Option(name: .customLong("ca-file"), help: ArgumentHelp("Trust this CA certificate (PEM) instead.", valueName: "file"))
    var caFile: String?

    @Option(name: .customLong("context"), help: ArgumentHelp("Name to store the context under.", valueName: "name"))
    var contextName = "default"

    @Flag(help: "Store the context without making it the current one.")
    var noSwitch = false

    func validate() throws {
        if caFingerprint != nil && caFile != nil { throw ValidationError("give --ca-fingerprint or --ca-file, not both") }
        if [token != nil, tokenStdin, tokenFile != nil].filter({ $0 }).count > 1 {
            throw ValidationError("give only one of --token, --token-file and --token-stdin")
        }
        if let caFingerprint { _ = try CertificateFingerprint.normalized(caFingerprint) }
        do { try ContextStore.validateName(contextName) } catch { throw ValidationError("--context: \(error)") }
    }

    func run() async throws {
        let urls = try CoordinatorOptions.coordinatorURLs(coordinator)
        for url in urls {
            do { try CoordinatorURLPolicy.check(url, insecure: insecure) } catch { throw CLIError(error.description) }
        }
        let url = urls[0]
        let stored = urls.map(\.absoluteString).joined(separator: ",")
        let secret = try readToken()
        var pem: Data? = nil
        if let caFingerprint {
            let expected = try CertificateFingerprint.normalized(caFingerprint)
            pem = try await CoordinatorTrust.fetchPinnedCA(
                from: urls, fingerprint: expected, userAgent: "manifold/\(ManifoldCLI.version)")
        } else if let caFile {
            do {
                pem = try Data(contentsOf: URL(fileURLWithPath: caFile))
            } catch {
                throw CLIError("cannot read the CA file \(caFile): \(error.localizedDescription)")
            }
            _ = try CertificateFingerprint.sha256(ofPEM: pem!)
        }
        let store = ContextStore()
        // Check the token against a temporary copy of the CA, so nothing is stored when it fails.
        let scratch = FileManager.default.temporaryDirectory.appendingPathComponent("manifold-login-\(UUID().uuidString).crt")
        defer { try? FileManager.default.removeItem(at: scratch) }
        if let pem { try ContextStore.writePrivate(pem, to: scratch) }
        let checking = try CoordinatorOptions.client(
            for: CoordinatorContext(coordinator: stored, token: secret, caFile: pem == nil ? nil : scratch.path))
        do {
            _ = try await checking.builds(limit: 1)
        } catch let error as CoordinatorClientError where error.status == 401 {
            throw CLIError("the coordinator at \(url.absoluteString) rejected the token (\(error)); nothing was stored")
        } catch let error as CoordinatorClientError where error.status == 403 {
            throw CLIError(
                "the token is valid but may not read builds (\(error)); log in with an admin, submitter or viewer token, "
                    + "not an agent join token")
        }
        let fingerprint = try pem.map { try CertificateFingerprint.sha256(ofPEM: $0) }
        try store.save(
            CoordinatorContext(coordinator: stored, token: secret, caFingerprint: fingerprint), named: contextName,
            caPEM: pem, makeCurrent: !noSwitch)
        print("Logged in to \(stored); context \"\(contextName)\" stored in \(store.file.path).")
        if let fingerprint { print("Pinned CA \(fingerprint).") }
    }

    private func readToken() throws -> String {
        if let path = tokenFile ?? (tokenStdin ? "-" : nil) {
            do { return try TokenFile.read(path, flag: tokenStdin ? "--token-stdin" : "--token-file") } catch {
                throw CLIError(error.description)
            }
        }
        if let token, !token.isEmpty { return token }
        if let token = ProcessInfo.processInfo.environment["MANIFOLD_TOKEN"], !token.isEmpty { return token }
        throw ValidationError("give --token-file PATH (- for standard input), --token TOKEN, or set MANIFOLD_TOKEN")
    }
}

/// `manifold context`: list, switch and remove stored coordinator contexts.
struct ContextCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "context",
        abstract: "List, switch and remove stored coordinator contexts.",
        discussion: """
            Examples:
              manifold context list
              manifold context use staging
              manifold context remove old-ci
            """,
        subcommands: [List.self, Use.self, Remove.self])

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "list", abstract: "List stored contexts; * marks the current one.",
            discussion: "Example:\n  manifold context list --output json")
        @Option(help: "Output format: text or json.") var output: OutputFormat = .text

        func run() async throws {
            let store = ContextStore()
            let (current, contexts) = try store.list()
            switch output {
            case .json:
                let rows = contexts.keys.sorted().map { name -> [String: String] in
                    var row = ["name": name, "coordinator": contexts[name]!.coordinator]
                    if name == current { row["current"] = "true" }
                    if let fingerprint = contexts[name]!.caFingerprint { row["caFingerprint"] = fingerprint }
                    return row
                }
                print(try APIJSON.string(rows))
            case .text:
                if contexts.isEmpty {
                    print("No contexts in \(store.file.path); run `manifold login`.")
                    return
                }
                var table = TextTable(["", "NAME", "COORDINATOR", "CA"])
                for name in contexts.keys.sorted() {
                    table.add([
                        name == current ? "*" : "", name, contexts[name]!.coordinator,
                        contexts[name]!.caFingerprint.map { String($0.prefix(19)) + "…" } ?? "system",
                    ])
                }
                print(table.render(), terminator: "")
            }
        }
    }

    struct Use: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "use", abstract: "Make a stored context the current one.",
            discussion: "Example:\n  manifold context use staging")
        @Argument(help: ArgumentHelp("Context name.", valueName: "name")) var name: String
        func run() async throws {
            try ContextStore().use(name)
            print("Now using context \"\(name)\".")
        }
    }

    struct Remove: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "remove", abstract: "Forget a stored context and its CA.",
            discussion: "Example:\n  manifold context remove old-ci")
        @Argument(help: ArgumentHelp("Context name.", valueName: "name")) var name: String
        func run() async throws {
            guard try ContextStore().remove(name) else { throw CLIError("there is no context named \"\(name)\"") }
            print("Removed context \"\(name)\".")
        }
    }
}
