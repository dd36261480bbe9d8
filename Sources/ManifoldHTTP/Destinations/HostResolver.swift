import Foundation

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Turns a host name into the addresses a connection to it would use, so a `DestinationPolicy` can judge them
/// and pin the connection to what it judged.
///
/// `system` asks the operating system's resolver (getaddrinfo) on a thread of its own, never on the Swift
/// concurrency pool. Tests may inject a fixed table.
public struct HostResolver: Sendable {
    private let lookup: @Sendable (String) async throws -> [IPAddress]

    public init(_ lookup: @escaping @Sendable (String) async throws -> [IPAddress]) {
        self.lookup = lookup
    }

    /// The addresses of `host`: the address itself when it is numeric, else what the resolver returns.
    /// Throws `HostResolutionError` when the name does not resolve.
    public func addresses(of host: String) async throws -> [IPAddress] {
        if let literal = IPAddress(host) { return [literal] }
        let found = try await lookup(host)
        guard !found.isEmpty else { throw HostResolutionError(host: host, message: "no address") }
        return found
    }

    /// The operating system's resolver.
    public static let system = HostResolver { host in
        try await withCheckedThrowingContinuation { continuation in
            let thread = Thread {
                continuation.resume(with: Result { try systemLookup(host) })
            }
            thread.name = "manifold-resolver"
            thread.start()
        }
    }

    private static func systemLookup(_ host: String) throws -> [IPAddress] {
        #if os(Windows)
        // Foundation's Host asks the Windows resolver (getaddrinfo) and returns numeric addresses.
        let found = Host(name: host).addresses.compactMap(IPAddress.init)
        guard !found.isEmpty else { throw HostResolutionError(host: host, message: "the name does not resolve") }
        return found
        #else
        var hints = addrinfo()
        hints.ai_family = AF_UNSPEC
        var list: UnsafeMutablePointer<addrinfo>?
        let status = getaddrinfo(host, nil, &hints, &list)
        guard status == 0, let first = list else {
            throw HostResolutionError(host: host, message: String(cString: gai_strerror(status)))
        }
        defer { freeaddrinfo(first) }
        var addresses: [IPAddress] = []
        var cursor: UnsafeMutablePointer<addrinfo>? = first
        while let entry = cursor {
            var buffer = [CChar](repeating: 0, count: 64)
            if let socketAddress = entry.pointee.ai_addr,
                getnameinfo(
                    socketAddress, socklen_t(entry.pointee.ai_addrlen), &buffer, socklen_t(buffer.count), nil, 0,
                    NI_NUMERICHOST) == 0,
                let address = IPAddress(String(decoding: buffer.prefix { $0 != 0 }.map(UInt8.init(bitPattern:)), as: UTF8.self)),
                !addresses.contains(address)
            {
                addresses.append(address)
            }
            cursor = entry.pointee.ai_next
        }
        return addresses
        #endif
    }
}

/// A host name that did not resolve.
public struct HostResolutionError: Error, CustomStringConvertible, Equatable {
    public var host: String
    public var message: String

    public init(host: String, message: String) {
        self.host = host
        self.message = message
    }

    public var description: String { "\(host) could not be resolved: \(message)" }
}
