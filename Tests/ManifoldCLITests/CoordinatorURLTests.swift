import Foundation
import Testing

@testable import ManifoldCLI

@Suite struct CoordinatorURLTests {
    @Test func oneOrSeveralReplicaURLsSeparatedByCommas() throws {
        #expect(try CoordinatorOptions.coordinatorURLs("ci.example:7443").map(\.absoluteString) == ["https://ci.example:7443"])
        #expect(
            try CoordinatorOptions.coordinatorURLs("https://a.example:7443, https://b.example:7443").map(\.absoluteString) == [
                "https://a.example:7443", "https://b.example:7443",
            ])
        #expect { try CoordinatorOptions.coordinatorURLs("https://a.example:7443,ftp://b") } throws: { error in
            "\(error)".contains("ftp://b")
        }
        #expect(throws: CLIError.self) { try CoordinatorOptions.coordinatorURLs(",") }
    }
}
