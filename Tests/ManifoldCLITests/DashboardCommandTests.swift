import Foundation
import ManifoldTestSupport
import Testing

@testable import ManifoldCLI

/// `manifold dashboard` prints the dashboard of the coordinator the other commands talk to.
@Suite struct DashboardCommandTests {
    @Test func theURLIsTheCoordinatorsFirstAddressWithThePathSlash() throws {
        let scratch = try ScratchDirectory(prefix: "dashboard-cli")
        defer { scratch.remove() }
        let environment = ["XDG_CONFIG_HOME": scratch.path]
        #expect(
            try DashboardCommand.dashboardURL(
                contextName: nil, environment: environment.merging(["MANIFOLD_COORDINATOR": "ci.example:7443"]) { $1 })
                == "https://ci.example:7443/")
        #expect(
            try DashboardCommand.dashboardURL(
                contextName: nil,
                environment: environment.merging([
                    "MANIFOLD_COORDINATOR": "https://a.example:7443/api?x=1, https://b.example:7443"
                ]) { $1 }) == "https://a.example:7443/")

        // A stored context (as `manifold login` keeps it) is used when the environment names none.
        let store = ContextStore(environment: environment)
        try store.save(
            CoordinatorContext(coordinator: "https://stored.example:8443", token: "mfd_viewer_x", caFile: nil), named: "ci",
            makeCurrent: true)
        #expect(try DashboardCommand.dashboardURL(contextName: nil, environment: environment) == "https://stored.example:8443/")
        #expect(try DashboardCommand.dashboardURL(contextName: "ci", environment: environment) == "https://stored.example:8443/")
        #expect(throws: CLIError.self) { try DashboardCommand.dashboardURL(contextName: "missing", environment: environment) }

        let empty = try ScratchDirectory(prefix: "dashboard-cli-empty")
        defer { empty.remove() }
        #expect { try DashboardCommand.dashboardURL(contextName: nil, environment: ["XDG_CONFIG_HOME": empty.path]) } throws: {
            "\($0)".contains("manifold login")
        }
    }
}
