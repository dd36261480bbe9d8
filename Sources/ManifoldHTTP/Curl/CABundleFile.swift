import CCurl
import Foundation
import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// A client's trusted CA certificates (`TLSConfiguration.caPEM`) as a file only this process opens: an anonymous
/// in-memory file (`memfd_create`), named `/proc/self/fd/N`, that lives as long as the client's transfer thread.
///
/// libcurl parses certificates given as a blob (`CURLOPT_CAINFO_BLOB`) again for every new connection. A registry
/// with a private CA is trusted beside the system bundle, about 150 certificates and 220 KB on Debian. Each TLS
/// handshake then spent about 26 ms of the client's one transfer thread on that, holding up every other transfer of
/// the client. From a file (`CURLOPT_CAINFO`), libcurl 7.87 and later (OpenSSL) builds the certificate store once
/// per multi handle and keeps it for a day (`CURLOPT_CA_CACHE_TIMEOUT`).
///
/// Linux only; elsewhere, or when the file cannot be made, `make(pem:)` returns nil and transfers pass the blob.
final class CABundleFile: Sendable {
    /// The path libcurl opens: the descriptor under `/proc/self/fd`.
    let path: String
    private let descriptor: Int32

    private init(path: String, descriptor: Int32) {
        self.path = path
        self.descriptor = descriptor
    }

    deinit {
        #if os(Linux)
        close(descriptor)
        #endif
    }

    static func make(pem: String) -> CABundleFile? {
        #if os(Linux)
        let descriptor = manifold_memfd_create("manifold-ca-\(sequence.add(1, ordering: .relaxed).newValue)")
        guard descriptor >= 0 else { return nil }
        let bundle = CABundleFile(path: "/proc/self/fd/\(descriptor)", descriptor: descriptor)
        let bytes = Array(pem.utf8)
        var written = 0
        while written < bytes.count {
            let result = bytes.withUnsafeBytes { buffer in
                write(descriptor, buffer.baseAddress! + written, buffer.count - written)
            }
            if result < 0 && errno == EINTR { continue }
            guard result > 0 else { return nil }
            written += result
        }
        // libcurl opens the path on its own: if this process cannot (no /proc), the blob is passed instead.
        let check = open(bundle.path, O_RDONLY | O_CLOEXEC)
        guard check >= 0 else { return nil }
        close(check)
        return bundle
        #else
        return nil
        #endif
    }

    /// Numbers the files, so each bundle's name (`/memfd:manifold-ca-N`) is its own.
    private static let sequence = Atomic<Int>(0)
}
