import Foundation
import Testing

@testable import ManifoldCoordinator

@Suite("Secrets")
struct SecretsTests {
    @Test func generatedSecretsHavePrefixLengthAndAlphabet() {
        for prefix in ["mfd_admin_", "mfd_join_", "mfd_agent_"] {
            let secret = Secrets.generate(prefix: prefix)
            #expect(secret.hasPrefix(prefix))
            let body = secret.dropFirst(prefix.count)
            // 32 bytes in base64url without padding: 43 characters.
            #expect(body.count == 43)
            #expect(body.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "-" || $0 == "_") })
        }
    }

    @Test func generatedSecretsAreUnique() {
        let secrets = (0..<1_000).map { _ in Secrets.generate(prefix: "mfd_join_") }
        #expect(Set(secrets).count == secrets.count)
    }

    @Test func base64URLDecodesToThirtyTwoBytes() throws {
        let body =
            String(
                Secrets.generate(prefix: "").replacingOccurrences(of: "-", with: "+")
                    .replacingOccurrences(of: "_", with: "/")) + "="
        #expect(try #require(Data(base64Encoded: body)).count == 32)
    }

    @Test func hashIsSHA256Hex() {
        #expect(Secrets.hash("abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        #expect(Secrets.hash("") == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
        let secret = Secrets.generate(prefix: "mfd_admin_")
        #expect(Secrets.hash(secret) == Secrets.hash(secret))
        #expect(!Secrets.hash(secret).contains(secret))
    }

    @Test func constantTimeEquals() {
        let hash = Secrets.hash("abc")
        #expect(Secrets.constantTimeEquals(hash, Secrets.hash("abc")))
        #expect(!Secrets.constantTimeEquals(hash, Secrets.hash("abd")))
        #expect(!Secrets.constantTimeEquals(hash, String(hash.dropLast())))
        #expect(!Secrets.constantTimeEquals(hash, hash + "0"))
        #expect(!Secrets.constantTimeEquals("", hash))
        #expect(Secrets.constantTimeEquals("", ""))
        // A difference only in the last byte, and only in length with a common prefix.
        #expect(!Secrets.constantTimeEquals("aaaa", "aaab"))
        #expect(!Secrets.constantTimeEquals("a", "a\u{0}"))
    }
}
