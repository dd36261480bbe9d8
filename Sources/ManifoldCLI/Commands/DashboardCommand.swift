import ArgumentParser
import Foundation

/// `manifold dashboard`: the web dashboard's address for the current context, optionally opened in a browser.
struct DashboardCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "dashboard",
        abstract: "Print (or open) the web dashboard's URL for the current coordinator context.",
        discussion: """
            The dashboard is served by the coordinator on the API's own address. Sign in there with an API token \
            (viewer, submitter or admin), for instance the one `manifold login` stored.

            Examples:
              manifold dashboard
              manifold dashboard --open
              manifold dashboard --use-context staging
            """,
        aliases: ["open"])

    @Option(
        name: .customLong("use-context"),
        help: ArgumentHelp(
            "The stored coordinator context to use (default: $MANIFOLD_CONTEXT, else the current one).", valueName: "name"))
    var contextName: String?

    @Flag(help: "Open the URL in the default browser (xdg-open, open or start).")
    var open = false

    func run() async throws {
        let url = try Self.dashboardURL(contextName: contextName)
        print(url)
        if open {
            do {
                try Self.openInBrowser(url)
            } catch {
                FileHandle.standardError.write(Data("could not open a browser (\(error)); open \(url) yourself\n".utf8))
            }
        }
    }

    /// The dashboard of the coordinator `MANIFOLD_COORDINATOR` or the chosen stored context names: its first URL with
    /// the path `/`.
    static func dashboardURL(
        contextName: String?, environment: [String: String] = ProcessInfo.processInfo.environment
    ) throws -> String {
        let stored = try ContextStore(environment: environment).context(named: contextName ?? environment["MANIFOLD_CONTEXT"])
        guard
            let text = environment["MANIFOLD_COORDINATOR"].flatMap({ $0.isEmpty ? nil : $0 }) ?? stored?.context.coordinator
        else {
            throw CLIError(
                "no coordinator is configured: run `manifold login URL --token TOKEN --ca-fingerprint sha256:…` "
                    + "or set MANIFOLD_COORDINATOR")
        }
        guard let first = try CoordinatorOptions.coordinatorURLs(text).first,
            var components = URLComponents(url: first, resolvingAgainstBaseURL: false)
        else { throw CLIError("\"\(text)\" is not a coordinator URL") }
        components.path = "/"
        components.query = nil
        components.fragment = nil
        guard let url = components.string else { throw CLIError("\"\(text)\" is not a coordinator URL") }
        return url
    }

    static func openInBrowser(_ url: String) throws {
        let process = Process()
        #if os(Windows)
        process.executableURL = URL(fileURLWithPath: "C:\\Windows\\System32\\cmd.exe")
        process.arguments = ["/c", "start", "", url]
        #elseif os(macOS)
        process.executableURL = URL(fileURLWithPath: "/usr/bin/open")
        process.arguments = [url]
        #else
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["xdg-open", url]
        #endif
        try process.run()
        process.waitUntilExit()
        guard process.terminationStatus == 0 else {
            throw CLIError("\(process.arguments?.first ?? "the opener") exited with status \(process.terminationStatus)")
        }
    }
}
