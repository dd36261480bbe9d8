import Foundation
import ManifoldAPI
import ManifoldCore
import ManifoldTestSupport
import Testing

@testable import ManifoldCoordinator

/// Malformed requests get 400 with the field named, and change nothing.
@Suite struct CoordinatorBadInputTests {
    @Test func malformedBuildsNameTheField() async throws {
        let fixture = try await CoordinatorFixture.start()
        let token = try await fixture.token(.submitter)
        let digest = try await fixture.uploadContext(token)
        let cases: [(String, String?)] = [
            ("{not json", nil),
            (#"{"image": "r.local/app", "platforms": [], "context": {"type": "upload", "digest": "\#(digest)"}}"#, "tags"),
            (
                #"{"image": "R.local/App", "tags": ["1"], "platforms": [{"platform": {"os": "linux", "architecture": "amd64"}}], "context": {"type": "upload", "digest": "\#(digest)"}}"#,
                "image"
            ),
            (
                #"{"image": "r.local/app", "tags": ["bad tag"], "platforms": [{"platform": {"os": "linux", "architecture": "amd64"}}], "context": {"type": "upload", "digest": "\#(digest)"}}"#,
                "tags[0]"
            ),
            (
                #"{"image": "r.local/app", "tags": ["1"], "platforms": [{"platform": {"os": "plan10", "architecture": "amd64"}}], "context": {"type": "upload", "digest": "\#(digest)"}}"#,
                "platforms[0].os"
            ),
            (
                #"{"image": "r.local/app", "tags": ["1"], "platforms": [{"platform": {"os": "linux", "architecture": "amd64"}}], "context": {"type": "ftp"}}"#,
                "context.type"
            ),
            (
                #"{"image": "r.local/app", "tags": ["1"], "platforms": [{"platform": {"os": "linux", "architecture": "amd64"}}], "context": {"type": "upload", "digest": "sha256:abc"}}"#,
                "context.digest"
            ),
            (
                #"{"image": "r.local/app", "tags": ["1"], "platforms": [{"platform": {"os": "linux", "architecture": "amd64"}}], "context": {"type": "upload", "digest": "\#(digest)"}, "dockerfile": "../../etc/passwd"}"#,
                "dockerfile"
            ),
        ]
        for (body, field) in cases {
            let reply = try await fixture.call(
                "POST", "/api/v1/builds", token: token, body: Data(body.utf8), headers: ["Content-Type": "application/json"])
            #expect(reply.status == 400, "\(body): \(reply.status)")
            #expect(reply.error?.message.isEmpty == false)
            if let field { #expect(reply.error?.field == field, "\(body): \(String(describing: reply.error))") }
        }
        let list = try await fixture.call("GET", "/api/v1/builds", token: token).decode(BuildList.self)
        #expect(list.builds.isEmpty)
        await fixture.stop()
    }

    @Test func aContextWhoseBytesDoNotMatchItsDigestIsNotKept() async throws {
        let fixture = try await CoordinatorFixture.start()
        let token = try await fixture.token(.submitter)
        let claimed = Digest.compute(of: Data("what I promised".utf8))
        let reply = try await fixture.call("PUT", "/api/v1/contexts/\(claimed)", token: token, body: Data("what I sent".utf8))
        #expect(reply.status == 400)
        #expect(reply.error?.code == "DIGEST_MISMATCH")
        #expect(try await fixture.call("HEAD", "/api/v1/contexts/\(claimed)", token: token).status == 404)
        let leftovers = try FileManager.default.contentsOfDirectory(atPath: fixture.state.contexts.path)
        #expect(leftovers.isEmpty, "\(leftovers)")
        let bad = try await fixture.call("PUT", "/api/v1/contexts/sha256:nothex", token: token, body: Data())
        #expect(bad.status == 400)
        #expect(bad.error?.field == "digest")
        await fixture.stop()
    }
}
