import Foundation
import ManifoldCore
import Testing

@Suite struct HashingTests {
    struct Vector: Sendable, CustomTestStringConvertible {
        let name: String
        let message: Data
        let sha256: String
        let sha512: String
        var testDescription: String { name }
    }

    /// FIPS 180-4 / NIST CSRC example vectors.
    static let vectors: [Vector] = [
        Vector(
            name: "empty", message: Data(),
            sha256: "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            sha512: "cf83e1357eefb8bdf1542850d66d8007d620e4050b5715dc83f4a921d36ce9ce"
                + "47d0d13c5d85f2b0ff8318d2877eec2f63b931bd47417a81a538327af927da3e"),
        Vector(
            name: "abc", message: Data("abc".utf8),
            sha256: "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
            sha512: "ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a"
                + "2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f"),
        Vector(
            name: "448 bits", message: Data("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq".utf8),
            sha256: "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1",
            sha512: "204a8fc6dda82f0a0ced7beb8e08a41657c16ef468b228a8279be331a703c335"
                + "96fd15c13b1b07f9aa1d3bea57789ca031ad85c7a71dd70354ec631238ca3445"),
        Vector(
            name: "896 bits",
            message: Data(
                ("abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmno"
                    + "ijklmnopjklmnopqklmnopqrlmnopqrsmnopqrstnopqrstu").utf8),
            sha256: "cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1",
            sha512: "8e959b75dae313da8cf4f72814fc143f8f7779c6eb9f7fa17299aeadb6889018"
                + "501d289e4900f7e4331b99dec4b5433ac7d329eeb6dd26545e96e55b874be909"),
        Vector(
            name: "one million a", message: Data(repeating: UInt8(ascii: "a"), count: 1_000_000),
            sha256: "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0",
            sha512: "e718483d0ce769644e2e42c7bc15b4638e1f98b13b2044285632a803afa973eb"
                + "de0ff244877ea60a4cb0432ce577c31beb009c5c2c49aa2e4eadb217ad8cc09b"),
    ]

    @Test(arguments: vectors)
    func nistVectors(_ vector: Vector) {
        #expect(Digest.compute(.sha256, of: vector.message).hex == vector.sha256)
        #expect(Digest.compute(.sha512, of: vector.message).hex == vector.sha512)
    }

    @Test(arguments: [0, 1, 55, 56, 63, 64, 65, 111, 112, 127, 128, 129, 1 << 20])
    func agreesWithOpenSSL(size: Int) throws {
        let data = randomBytes(size)
        #expect(Digest.compute(.sha256, of: data).hex == (try opensslHex("sha256", of: data)))
        #expect(Digest.compute(.sha512, of: data).hex == (try opensslHex("sha512", of: data)))
    }

    @Test(arguments: Digest.Algorithm.allCases)
    func streamingInUnevenPiecesEqualsOneShot(algorithm: Digest.Algorithm) {
        let data = randomBytes(10_000)
        var hasher = DigestHasher(algorithm)
        var offset = 0
        for size in [0, 1, 3, 60, 64, 127, 128, 129, 1000, 5] + Array(repeating: 500, count: 20) where offset < data.count {
            let end = min(offset + size, data.count)
            hasher.update(data[offset..<end])
            offset = end
        }
        hasher.update(data[offset...])
        #expect(hasher.finalize() == Digest.compute(algorithm, of: data))
    }

    @Test(arguments: Digest.Algorithm.allCases)
    func hashersAreReusableAfterFinalize(algorithm: Digest.Algorithm) {
        var hasher = DigestHasher(algorithm)
        hasher.update(Data("abc".utf8))
        let first = hasher.finalize()
        #expect(first == Digest.compute(algorithm, of: Data("abc".utf8)))
        #expect(hasher.finalize() == Digest.compute(algorithm, of: Data()))
        hasher.update(Data("abc".utf8))
        #expect(hasher.finalize() == first)
    }

    @Test func rawBufferUpdateMatchesData() {
        let data = randomBytes(300)
        var hasher = DigestHasher(.sha256)
        data.withUnsafeBytes { hasher.update($0) }
        #expect(hasher.finalize() == Digest.compute(of: data))
    }

    @Test func computeAcceptsAnyDataProtocol() {
        let bytes: [UInt8] = Array("abc".utf8)
        #expect(Digest.compute(of: bytes).hex == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
    }
}
