import Foundation
import Hummingbird
import ManifoldStore
import Testing
import Yams

@testable import ManifoldCoordinator

/// docs/openapi.yaml describes exactly the API routes the coordinator serves (and mentions the dashboard's pages).
@Suite struct OpenAPIDocumentTests {
    @Test func everyRouteIsDocumentedAndEveryDocumentedRouteExists() throws {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().deletingLastPathComponent()
        let text = try String(contentsOf: root.appendingPathComponent("docs/openapi.yaml"), encoding: .utf8)
        let document = try #require(try Yams.load(yaml: text) as? [String: Any])
        let paths = try #require(document["paths"] as? [String: Any])
        var documented = Set<String>()
        for (path, item) in paths {
            let operations = (item as? [String: Any] ?? [:]).keys.filter {
                ["get", "put", "post", "delete", "head", "patch"].contains($0)
            }
            // Both OpenAPI and Hummingbird's route descriptions write parameters as {name}.
            for operation in operations { documented.insert("\(operation.uppercased()) \(path)") }
        }
        let scratch = FileManager.default.temporaryDirectory.appendingPathComponent("openapi-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: scratch) }
        try FileManager.default.createDirectory(at: scratch, withIntermediateDirectories: true)
        let store = try Store(path: scratch.appendingPathComponent("db").path)
        let api = CoordinatorAPI(
            store: store, notifier: WorkNotifier(), metrics: CoordinatorMetrics(),
            options: .init(contextsDirectory: scratch, caCertificatePEM: nil), hash: Secrets.hash,
            generateSecret: Secrets.generate(prefix:))
        // The dashboard's HTML pages share the port but are not part of the API: the document names them in its
        // description instead.
        let routes = api.router().routes
        let served = Set(routes.filter { !CoordinatorAPI.isDashboardPath("\($0.path)") }.map { "\($0.method) \($0.path)" })
        #expect(routes.contains { CoordinatorAPI.isDashboardPath("\($0.path)") })
        let description = try #require((document["info"] as? [String: Any])?["description"] as? String)
        #expect(description.contains("web dashboard"))
        #expect(served.subtracting(documented).isEmpty, "served but not documented: \(served.subtracting(documented).sorted())")
        #expect(documented.subtracting(served).isEmpty, "documented but not served: \(documented.subtracting(served).sorted())")
    }
}
