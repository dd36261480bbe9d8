import ManifoldHTTP
import Testing

@Suite struct HTTPHeadersTests {
    @Test func namesAreCaseInsensitiveAndOrderIsKept() {
        var headers: HTTPHeaders = ["Accept": "a/1"]
        headers.add("accept", "b/2")
        headers.add("X-Other", "x")
        #expect(headers["ACCEPT"] == "a/1")
        #expect(headers.values("Accept") == ["a/1", "b/2"])
        #expect(headers.map(\.name) == ["Accept", "accept", "X-Other"])
        headers.replaceOrAdd("ACCEPT", "c/3")
        #expect(headers.values("accept") == ["c/3"])
        #expect(headers.map(\.name) == ["ACCEPT", "X-Other"])
        headers.replaceOrAdd("New", "n")
        #expect(headers["new"] == "n")
        headers.remove("x-other")
        #expect(headers["X-Other"] == nil)
        #expect(!headers.isEmpty)
        #expect(HTTPHeaders().isEmpty)
    }

    @Test func equalityIgnoresNameCase() {
        #expect(HTTPHeaders([("A", "1"), ("b", "2")]) == HTTPHeaders([("a", "1"), ("B", "2")]))
        #expect(HTTPHeaders([("A", "1"), ("b", "2")]) != HTTPHeaders([("b", "2"), ("A", "1")]))
        #expect(Set([HTTPHeaders([("A", "1")]), HTTPHeaders([("a", "1")])]).count == 1)
    }

    @Test func descriptionRedactsSensitiveValues() {
        let headers: HTTPHeaders = ["Authorization": "Bearer secret", "Cookie": "c=1", "Accept": "x"]
        #expect(!headers.description.contains("secret"))
        #expect(!headers.description.contains("c=1"))
        #expect(headers.description.contains("Accept: x"))
        #expect(!headers.redacted(["X-Token"]).contains("secret"))
    }
}
