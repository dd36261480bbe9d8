import Foundation

// Pure-Swift SHA-2 (FIPS 180-4) so that ManifoldCore needs nothing but Foundation on every platform,
// Windows included. Whole blocks are compressed straight from the caller's buffer; only a trailing
// partial block is copied into the hasher's 64/128-byte pending buffer.

/// A streaming SHA-256 hasher (FIPS 180-4).
///
/// ```swift
/// var hasher = SHA256Hasher()
/// hasher.update(firstChunk)
/// hasher.update(secondChunk)
/// let bytes = hasher.finalize()  // 32 bytes
/// ```
public struct SHA256Hasher: Sendable {
    static let blockSize = 64
    static let outputSize = 32

    private var state: [UInt32]
    private var pending: [UInt8]
    private var pendingCount = 0
    private var byteCount: UInt64 = 0

    /// Creates a hasher in its initial state.
    public init() {
        state = Self.initialState
        pending = [UInt8](repeating: 0, count: Self.blockSize)
    }

    /// Feeds more message bytes into the hash.
    public mutating func update(_ bytes: UnsafeRawBufferPointer) {
        byteCount &+= UInt64(bytes.count)
        absorb(bytes, blockSize: Self.blockSize, pending: &pending, pendingCount: &pendingCount) { blocks in
            Self.compress(&state, blocks: blocks)
        }
    }

    /// Feeds more message bytes into the hash.
    public mutating func update(_ data: Data) {
        data.withUnsafeBytes { update($0) }
    }

    /// Pads the message, returns the 32-byte digest and resets the hasher so it can be reused.
    public mutating func finalize() -> [UInt8] {
        let bitLength = byteCount &* 8
        var padding: [UInt8] = [0x80]
        let afterMarker = (pendingCount + 1) % Self.blockSize
        let zeros = (Self.blockSize - 8 - afterMarker + Self.blockSize) % Self.blockSize
        padding.append(contentsOf: repeatElement(0, count: zeros))
        withUnsafeBytes(of: bitLength.bigEndian) { padding.append(contentsOf: $0) }
        padding.withUnsafeBytes { update($0) }
        precondition(pendingCount == 0, "SHA-256 padding must end on a block boundary")

        var output = [UInt8]()
        output.reserveCapacity(Self.outputSize)
        for word in state {
            withUnsafeBytes(of: word.bigEndian) { output.append(contentsOf: $0) }
        }
        self = SHA256Hasher()
        return output
    }

    private static let initialState: [UInt32] = [
        0x6a09_e667, 0xbb67_ae85, 0x3c6e_f372, 0xa54f_f53a, 0x510e_527f, 0x9b05_688c, 0x1f83_d9ab, 0x5be0_cd19,
    ]

    private static let roundConstants: [UInt32] = [
        0x428a_2f98, 0x7137_4491, 0xb5c0_fbcf, 0xe9b5_dba5, 0x3956_c25b, 0x59f1_11f1, 0x923f_82a4, 0xab1c_5ed5,
        0xd807_aa98, 0x1283_5b01, 0x2431_85be, 0x550c_7dc3, 0x72be_5d74, 0x80de_b1fe, 0x9bdc_06a7, 0xc19b_f174,
        0xe49b_69c1, 0xefbe_4786, 0x0fc1_9dc6, 0x240c_a1cc, 0x2de9_2c6f, 0x4a74_84aa, 0x5cb0_a9dc, 0x76f9_88da,
        0x983e_5152, 0xa831_c66d, 0xb003_27c8, 0xbf59_7fc7, 0xc6e0_0bf3, 0xd5a7_9147, 0x06ca_6351, 0x1429_2967,
        0x27b7_0a85, 0x2e1b_2138, 0x4d2c_6dfc, 0x5338_0d13, 0x650a_7354, 0x766a_0abb, 0x81c2_c92e, 0x9272_2c85,
        0xa2bf_e8a1, 0xa81a_664b, 0xc24b_8b70, 0xc76c_51a3, 0xd192_e819, 0xd699_0624, 0xf40e_3585, 0x106a_a070,
        0x19a4_c116, 0x1e37_6c08, 0x2748_774c, 0x34b0_bcb5, 0x391c_0cb3, 0x4ed8_aa4a, 0x5b9c_ca4f, 0x682e_6ff3,
        0x748f_82ee, 0x78a5_636f, 0x84c8_7814, 0x8cc7_0208, 0x90be_fffa, 0xa450_6ceb, 0xbef9_a3f7, 0xc671_78f2,
    ]

    /// Runs the compression function over `blocks`, whose length is a multiple of 64.
    private static func compress(_ state: inout [UInt32], blocks: UnsafeRawBufferPointer) {
        withUnsafeTemporaryAllocation(of: UInt32.self, capacity: 64) { w in
            roundConstants.withUnsafeBufferPointer { k in
                var h0 = state[0], h1 = state[1], h2 = state[2], h3 = state[3]
                var h4 = state[4], h5 = state[5], h6 = state[6], h7 = state[7]
                var offset = 0
                while offset < blocks.count {
                    for t in 0..<16 {
                        w[t] = UInt32(bigEndian: blocks.loadUnaligned(fromByteOffset: offset + t &* 4, as: UInt32.self))
                    }
                    for t in 16..<64 {
                        let x = w[t - 15], y = w[t - 2]
                        let s0 = rotr(x, 7) ^ rotr(x, 18) ^ (x >> 3)
                        let s1 = rotr(y, 17) ^ rotr(y, 19) ^ (y >> 10)
                        w[t] = w[t - 16] &+ s0 &+ w[t - 7] &+ s1
                    }
                    var a = h0, b = h1, c = h2, d = h3, e = h4, f = h5, g = h6, h = h7
                    for t in 0..<64 {
                        let sigma1 = rotr(e, 6) ^ rotr(e, 11) ^ rotr(e, 25)
                        let choice = (e & f) ^ (~e & g)
                        let t1 = h &+ sigma1 &+ choice &+ k[t] &+ w[t]
                        let sigma0 = rotr(a, 2) ^ rotr(a, 13) ^ rotr(a, 22)
                        let majority = (a & b) ^ (a & c) ^ (b & c)
                        let t2 = sigma0 &+ majority
                        h = g
                        g = f
                        f = e
                        e = d &+ t1
                        d = c
                        c = b
                        b = a
                        a = t1 &+ t2
                    }
                    h0 &+= a
                    h1 &+= b
                    h2 &+= c
                    h3 &+= d
                    h4 &+= e
                    h5 &+= f
                    h6 &+= g
                    h7 &+= h
                    offset &+= blockSize
                }
                state[0] = h0
                state[1] = h1
                state[2] = h2
                state[3] = h3
                state[4] = h4
                state[5] = h5
                state[6] = h6
                state[7] = h7
            }
        }
    }

    @inline(__always)
    private static func rotr(_ x: UInt32, _ n: UInt32) -> UInt32 {
        (x >> n) | (x << (32 &- n))
    }
}

/// A streaming SHA-512 hasher (FIPS 180-4).
///
/// ```swift
/// var hasher = SHA512Hasher()
/// hasher.update(data)
/// let bytes = hasher.finalize()  // 64 bytes
/// ```
public struct SHA512Hasher: Sendable {
    static let blockSize = 128
    static let outputSize = 64

    private var state: [UInt64]
    private var pending: [UInt8]
    private var pendingCount = 0
    private var byteCount: UInt64 = 0

    /// Creates a hasher in its initial state.
    public init() {
        state = Self.initialState
        pending = [UInt8](repeating: 0, count: Self.blockSize)
    }

    /// Feeds more message bytes into the hash.
    public mutating func update(_ bytes: UnsafeRawBufferPointer) {
        byteCount &+= UInt64(bytes.count)
        absorb(bytes, blockSize: Self.blockSize, pending: &pending, pendingCount: &pendingCount) { blocks in
            Self.compress(&state, blocks: blocks)
        }
    }

    /// Feeds more message bytes into the hash.
    public mutating func update(_ data: Data) {
        data.withUnsafeBytes { update($0) }
    }

    /// Pads the message, returns the 64-byte digest and resets the hasher so it can be reused.
    public mutating func finalize() -> [UInt8] {
        // The message length is a 128-bit big-endian bit count; a UInt64 byte count covers 2^67 bits.
        let highBits = byteCount >> 61
        let lowBits = byteCount &<< 3
        var padding: [UInt8] = [0x80]
        let afterMarker = (pendingCount + 1) % Self.blockSize
        let zeros = (Self.blockSize - 16 - afterMarker + Self.blockSize) % Self.blockSize
        padding.append(contentsOf: repeatElement(0, count: zeros))
        withUnsafeBytes(of: highBits.bigEndian) { padding.append(contentsOf: $0) }
        withUnsafeBytes(of: lowBits.bigEndian) { padding.append(contentsOf: $0) }
        padding.withUnsafeBytes { update($0) }
        precondition(pendingCount == 0, "SHA-512 padding must end on a block boundary")

        var output = [UInt8]()
        output.reserveCapacity(Self.outputSize)
        for word in state {
            withUnsafeBytes(of: word.bigEndian) { output.append(contentsOf: $0) }
        }
        self = SHA512Hasher()
        return output
    }

    private static let initialState: [UInt64] = [
        0x6a09_e667_f3bc_c908, 0xbb67_ae85_84ca_a73b, 0x3c6e_f372_fe94_f82b, 0xa54f_f53a_5f1d_36f1,
        0x510e_527f_ade6_82d1, 0x9b05_688c_2b3e_6c1f, 0x1f83_d9ab_fb41_bd6b, 0x5be0_cd19_137e_2179,
    ]

    private static let roundConstants: [UInt64] = [
        0x428a_2f98_d728_ae22, 0x7137_4491_23ef_65cd, 0xb5c0_fbcf_ec4d_3b2f, 0xe9b5_dba5_8189_dbbc,
        0x3956_c25b_f348_b538, 0x59f1_11f1_b605_d019, 0x923f_82a4_af19_4f9b, 0xab1c_5ed5_da6d_8118,
        0xd807_aa98_a303_0242, 0x1283_5b01_4570_6fbe, 0x2431_85be_4ee4_b28c, 0x550c_7dc3_d5ff_b4e2,
        0x72be_5d74_f27b_896f, 0x80de_b1fe_3b16_96b1, 0x9bdc_06a7_25c7_1235, 0xc19b_f174_cf69_2694,
        0xe49b_69c1_9ef1_4ad2, 0xefbe_4786_384f_25e3, 0x0fc1_9dc6_8b8c_d5b5, 0x240c_a1cc_77ac_9c65,
        0x2de9_2c6f_592b_0275, 0x4a74_84aa_6ea6_e483, 0x5cb0_a9dc_bd41_fbd4, 0x76f9_88da_8311_53b5,
        0x983e_5152_ee66_dfab, 0xa831_c66d_2db4_3210, 0xb003_27c8_98fb_213f, 0xbf59_7fc7_beef_0ee4,
        0xc6e0_0bf3_3da8_8fc2, 0xd5a7_9147_930a_a725, 0x06ca_6351_e003_826f, 0x1429_2967_0a0e_6e70,
        0x27b7_0a85_46d2_2ffc, 0x2e1b_2138_5c26_c926, 0x4d2c_6dfc_5ac4_2aed, 0x5338_0d13_9d95_b3df,
        0x650a_7354_8baf_63de, 0x766a_0abb_3c77_b2a8, 0x81c2_c92e_47ed_aee6, 0x9272_2c85_1482_353b,
        0xa2bf_e8a1_4cf1_0364, 0xa81a_664b_bc42_3001, 0xc24b_8b70_d0f8_9791, 0xc76c_51a3_0654_be30,
        0xd192_e819_d6ef_5218, 0xd699_0624_5565_a910, 0xf40e_3585_5771_202a, 0x106a_a070_32bb_d1b8,
        0x19a4_c116_b8d2_d0c8, 0x1e37_6c08_5141_ab53, 0x2748_774c_df8e_eb99, 0x34b0_bcb5_e19b_48a8,
        0x391c_0cb3_c5c9_5a63, 0x4ed8_aa4a_e341_8acb, 0x5b9c_ca4f_7763_e373, 0x682e_6ff3_d6b2_b8a3,
        0x748f_82ee_5def_b2fc, 0x78a5_636f_4317_2f60, 0x84c8_7814_a1f0_ab72, 0x8cc7_0208_1a64_39ec,
        0x90be_fffa_2363_1e28, 0xa450_6ceb_de82_bde9, 0xbef9_a3f7_b2c6_7915, 0xc671_78f2_e372_532b,
        0xca27_3ece_ea26_619c, 0xd186_b8c7_21c0_c207, 0xeada_7dd6_cde0_eb1e, 0xf57d_4f7f_ee6e_d178,
        0x06f0_67aa_7217_6fba, 0x0a63_7dc5_a2c8_98a6, 0x113f_9804_bef9_0dae, 0x1b71_0b35_131c_471b,
        0x28db_77f5_2304_7d84, 0x32ca_ab7b_40c7_2493, 0x3c9e_be0a_15c9_bebc, 0x431d_67c4_9c10_0d4c,
        0x4cc5_d4be_cb3e_42b6, 0x597f_299c_fc65_7e2a, 0x5fcb_6fab_3ad6_faec, 0x6c44_198c_4a47_5817,
    ]

    /// Runs the compression function over `blocks`, whose length is a multiple of 128.
    private static func compress(_ state: inout [UInt64], blocks: UnsafeRawBufferPointer) {
        withUnsafeTemporaryAllocation(of: UInt64.self, capacity: 80) { w in
            roundConstants.withUnsafeBufferPointer { k in
                var h0 = state[0], h1 = state[1], h2 = state[2], h3 = state[3]
                var h4 = state[4], h5 = state[5], h6 = state[6], h7 = state[7]
                var offset = 0
                while offset < blocks.count {
                    for t in 0..<16 {
                        w[t] = UInt64(bigEndian: blocks.loadUnaligned(fromByteOffset: offset + t &* 8, as: UInt64.self))
                    }
                    for t in 16..<80 {
                        let x = w[t - 15], y = w[t - 2]
                        let s0 = rotr(x, 1) ^ rotr(x, 8) ^ (x >> 7)
                        let s1 = rotr(y, 19) ^ rotr(y, 61) ^ (y >> 6)
                        w[t] = w[t - 16] &+ s0 &+ w[t - 7] &+ s1
                    }
                    var a = h0, b = h1, c = h2, d = h3, e = h4, f = h5, g = h6, h = h7
                    for t in 0..<80 {
                        let sigma1 = rotr(e, 14) ^ rotr(e, 18) ^ rotr(e, 41)
                        let choice = (e & f) ^ (~e & g)
                        let t1 = h &+ sigma1 &+ choice &+ k[t] &+ w[t]
                        let sigma0 = rotr(a, 28) ^ rotr(a, 34) ^ rotr(a, 39)
                        let majority = (a & b) ^ (a & c) ^ (b & c)
                        let t2 = sigma0 &+ majority
                        h = g
                        g = f
                        f = e
                        e = d &+ t1
                        d = c
                        c = b
                        b = a
                        a = t1 &+ t2
                    }
                    h0 &+= a
                    h1 &+= b
                    h2 &+= c
                    h3 &+= d
                    h4 &+= e
                    h5 &+= f
                    h6 &+= g
                    h7 &+= h
                    offset &+= blockSize
                }
                state[0] = h0
                state[1] = h1
                state[2] = h2
                state[3] = h3
                state[4] = h4
                state[5] = h5
                state[6] = h6
                state[7] = h7
            }
        }
    }

    @inline(__always)
    private static func rotr(_ x: UInt64, _ n: UInt64) -> UInt64 {
        (x >> n) | (x << (64 &- n))
    }
}

/// Buffers `input` into whole blocks: tops up the pending partial block first, hands every complete
/// block run to `compress` without copying it, and keeps the tail in `pending`.
@inline(__always)
private func absorb(
    _ input: UnsafeRawBufferPointer, blockSize: Int, pending: inout [UInt8], pendingCount: inout Int,
    compress: (UnsafeRawBufferPointer) -> Void
) {
    var input = input
    if pendingCount > 0 {
        let take = min(blockSize - pendingCount, input.count)
        pending.withUnsafeMutableBytes { buffer in
            buffer.baseAddress!.advanced(by: pendingCount).copyMemory(from: input.baseAddress!, byteCount: take)
        }
        pendingCount += take
        input = UnsafeRawBufferPointer(rebasing: input[take...])
        guard pendingCount == blockSize else { return }
        pending.withUnsafeBytes { compress($0) }
        pendingCount = 0
    }
    let whole = input.count - input.count % blockSize
    if whole > 0 {
        compress(UnsafeRawBufferPointer(rebasing: input[..<whole]))
    }
    let rest = input.count - whole
    if rest > 0 {
        pending.withUnsafeMutableBytes { buffer in
            buffer.baseAddress!.copyMemory(from: input.baseAddress!.advanced(by: whole), byteCount: rest)
        }
        pendingCount = rest
    }
}

/// A streaming hasher that produces a ``Digest`` with the chosen algorithm, for blobs and files read in pieces.
///
/// ```swift
/// var hasher = DigestHasher(.sha256)
/// while let chunk = try handle.read(upToCount: 1 << 20), !chunk.isEmpty { hasher.update(chunk) }
/// let digest = hasher.finalize()
/// ```
public struct DigestHasher: Sendable {
    // Exactly one of these is non-nil; optional chaining mutates it in place without copying its buffers.
    private var sha256: SHA256Hasher?
    private var sha512: SHA512Hasher?

    /// The algorithm this hasher computes.
    public let algorithm: Digest.Algorithm

    /// Creates a hasher for `algorithm`.
    public init(_ algorithm: Digest.Algorithm = .sha256) {
        self.algorithm = algorithm
        switch algorithm {
        case .sha256: sha256 = SHA256Hasher()
        case .sha512: sha512 = SHA512Hasher()
        }
    }

    /// Feeds more bytes into the hash.
    public mutating func update(_ data: Data) {
        data.withUnsafeBytes { update($0) }
    }

    /// Feeds more bytes into the hash.
    public mutating func update(_ bytes: UnsafeRawBufferPointer) {
        sha256?.update(bytes)
        sha512?.update(bytes)
    }

    /// Feeds every contiguous region of `data` into the hash.
    public mutating func update(contentsOf data: some DataProtocol) {
        for region in data.regions {
            region.withUnsafeBytes { update($0) }
        }
    }

    /// Returns the digest of everything fed so far and resets the hasher.
    public mutating func finalize() -> Digest {
        let bytes = sha256?.finalize() ?? sha512?.finalize() ?? []
        return Digest(uncheckedAlgorithm: algorithm, hex: Hex.encode(bytes))
    }
}

/// Lowercase hexadecimal encoding.
enum Hex {
    private static let digits = Array("0123456789abcdef".utf8)

    static func encode(_ bytes: some Sequence<UInt8>) -> String {
        var utf8: [UInt8] = []
        utf8.reserveCapacity(bytes.underestimatedCount * 2)
        for byte in bytes {
            utf8.append(digits[Int(byte >> 4)])
            utf8.append(digits[Int(byte & 0x0f)])
        }
        return String(decoding: utf8, as: UTF8.self)
    }
}
