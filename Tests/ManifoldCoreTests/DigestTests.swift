import Foundation
import ManifoldCore
import Testing

@Suite struct DigestTests {
    @Test func parsesAndPrintsCanonicalForm() throws {
        let text = "sha256:" + String(repeating: "0123456789abcdef", count: 4)
        let digest = try Digest(parsing: text)
        #expect(digest.algorithm == .sha256)
        #expect(digest.hex.count == 64)
        #expect(digest.description == text)
        #expect(digest.shortHex == "0123456789ab")
        #expect(Digest(text) == digest)
        #expect(try Digest(algorithm: .sha256, hex: digest.hex) == digest)
    }

    @Test func parsesSHA512() throws {
        let digest = try Digest(parsing: "sha512:" + String(repeating: "f", count: 128))
        #expect(digest.algorithm == .sha512)
    }

    struct Invalid: Sendable, CustomTestStringConvertible {
        let input: String
        let mentions: String
        var testDescription: String { input.isEmpty ? "(empty)" : input }
    }

    static let invalid: [Invalid] = [
        Invalid(input: "", mentions: "missing \":\""),
        Invalid(input: String(repeating: "a", count: 64), mentions: "missing \":\""),
        Invalid(input: "sha256:" + String(repeating: "A", count: 64), mentions: "uppercase"),
        Invalid(input: "sha256:" + String(repeating: "a", count: 63), mentions: "has 63 characters; expected 64"),
        Invalid(input: "sha256:" + String(repeating: "a", count: 128), mentions: "has 128 characters; expected 64"),
        Invalid(input: "sha512:" + String(repeating: "a", count: 64), mentions: "expected 128"),
        Invalid(
            input: "md5:d41d8cd98f00b204e9800998ecf8427e",
            mentions: "unsupported algorithm \"md5\"; expected one of sha256, sha512"),
        Invalid(input: "SHA256:" + String(repeating: "a", count: 64), mentions: "unsupported algorithm \"SHA256\""),
        Invalid(input: ":" + String(repeating: "a", count: 64), mentions: "algorithm before \":\" is empty"),
        Invalid(input: "sha256:", mentions: "hex part after \"sha256:\" is empty"),
        Invalid(input: "sha256:" + String(repeating: "g", count: 64), mentions: "contains \"g\", which is not a hex digit"),
        Invalid(input: "sha256: " + String(repeating: "a", count: 63), mentions: "not a hex digit"),
    ]

    @Test(arguments: invalid)
    func rejectsWithAReason(_ testCase: Invalid) {
        #expect(throws: DigestError.self) { try Digest(parsing: testCase.input) }
        do {
            _ = try Digest(parsing: testCase.input)
        } catch {
            #expect(error.input == testCase.input)
            #expect(error.description.hasPrefix("invalid digest \"\(testCase.input)\": "))
            #expect(error.description.contains(testCase.mentions), "\(error.description)")
        }
        #expect(Digest(testCase.input) == nil)
    }

    @Test func componentInitialiserValidatesHex() {
        #expect(throws: DigestError.self) { try Digest(algorithm: .sha512, hex: String(repeating: "a", count: 64)) }
    }

    @Test func matchesRecomputesWithItsOwnAlgorithm() {
        let data = Data("hello".utf8)
        #expect(Digest.compute(of: data).matches(data))
        #expect(Digest.compute(.sha512, of: data).matches(data))
        #expect(!Digest.compute(of: data).matches(Data("hellO".utf8)))
    }

    @Test func codableAsASingleString() throws {
        let digest = Digest.compute(of: Data("x".utf8))
        let json = try CanonicalJSON.encode(["digest": digest])
        #expect(String(decoding: json, as: UTF8.self) == "{\"digest\":\"\(digest)\"}")
        #expect(try JSONDecoder().decode([String: Digest].self, from: json) == ["digest": digest])
    }

    @Test func decodingAnInvalidDigestExplainsWhy() {
        let json = Data(#"["sha256:abc"]"#.utf8)
        #expect {
            try JSONDecoder().decode([Digest].self, from: json)
        } throws: { error in
            "\(error)".contains("has 3 characters; expected 64")
        }
    }
}
