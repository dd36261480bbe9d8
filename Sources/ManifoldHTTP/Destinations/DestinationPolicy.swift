import Foundation

/// Which URLs a request and the redirects it meets may reach, checked before every connection.
///
/// A request belongs to one trusted origin (a registry, as configured). Anything else it is sent to — a token realm,
/// an upload `Location`, a redirect to blob storage — must use HTTPS (unless plain HTTP is allowed for the
/// origin) and resolve only to public addresses or to addresses of the same kind as the origin's own: a registry on
/// loopback may send its client to loopback, one on the internet may not send it to 169.254.169.254 or 10.0.0.1.
/// The connection is then pinned to the addresses checked, so a name that resolves differently a moment later
/// (DNS rebinding) cannot slip past. (Through a proxy the proxy resolves the name again; the check still applies
/// to what this machine resolves.)
///
/// ```swift
/// let policy = DestinationPolicy(trustedOrigin: URL(string: "https://registry.example")!)
/// var request = HTTPRequest(url: realm)
/// request.destinationPolicy = policy   // HTTPClient asks it before the first hop and each redirect
/// ```
public struct DestinationPolicy: Sendable {
    /// The origin trusted as configured (scheme, host and port).
    public var trustedOrigin: URL
    /// Whether other origins may be reached over plain HTTP (the trusted origin is itself a plain-HTTP registry).
    public var allowsPlainHTTP: Bool
    /// How many redirects a request may follow under this policy.
    public var maxRedirects: Int
    public var resolver: HostResolver
    /// The kind of network an address belongs to; injectable so tests can stand a loopback server in for a public one.
    public var scope: @Sendable (IPAddress) -> AddressScope

    public init(
        trustedOrigin: URL, allowsPlainHTTP: Bool = false, maxRedirects: Int = 5, resolver: HostResolver = .system,
        scope: @escaping @Sendable (IPAddress) -> AddressScope = { $0.scope }
    ) {
        self.trustedOrigin = trustedOrigin
        self.allowsPlainHTTP = allowsPlainHTTP
        self.maxRedirects = maxRedirects
        self.resolver = resolver
        self.scope = scope
    }

    /// Checks `url` and returns the addresses its connection must use (empty when the host is numeric, nothing
    /// to pin). Throws `HTTPClientError.destinationRefused` naming the rule it breaks.
    public func admit(_ url: URL) async throws -> [IPAddress] {
        guard let host = url.host, !host.isEmpty, let scheme = url.scheme?.lowercased() else {
            throw HTTPClientError.destinationRefused(url: url.absoluteString, reason: "the URL has no scheme or host")
        }
        let trusted = HTTPClient.origin(of: url) == HTTPClient.origin(of: trustedOrigin)
        let addresses: [IPAddress]
        do {
            addresses = try await resolver.addresses(of: host)
        } catch let error as HostResolutionError {
            // The registry itself is trusted as configured: where only an HTTP proxy can resolve its name, the proxy
            // does. Anything else must resolve here, or it cannot be checked.
            if trusted { return [] }
            throw HTTPClientError.connect(url: url.absoluteString, message: error.description)
        }
        let pins = IPAddress(host) == nil ? addresses : []
        if trusted { return pins }

        if scheme != "https" && !(scheme == "http" && allowsPlainHTTP) {
            throw HTTPClientError.destinationRefused(
                url: url.absoluteString,
                reason: "it is not HTTPS; a token realm, upload location or redirect of \(Self.originText(trustedOrigin)) "
                    + "must use HTTPS unless that registry is configured as a plain-HTTP (insecure) registry")
        }
        let originScopes = try await originScopes()
        for address in addresses {
            let kind = scope(address)
            if kind == .public || originScopes.contains(kind) && [.loopback, .linkLocal, .private].contains(kind) {
                continue
            }
            switch kind {
            case .unspecified, .multicast, .reserved:
                throw HTTPClientError.destinationRefused(
                    url: url.absoluteString,
                    reason: "it resolves to \(address), a \(kind) address, which is never contacted")
            default:
                let own = originScopes.map(\.description).sorted().joined(separator: "/")
                throw HTTPClientError.destinationRefused(
                    url: url.absoluteString,
                    reason: "it resolves to \(address), a \(kind) address, but \(Self.originText(trustedOrigin)) is on "
                        + "\(own.isEmpty ? "no such" : own) addresses; a token realm, upload location or redirect may "
                        + "only lead to public addresses or to the registry's own kind of network")
            }
        }
        return pins
    }

    /// The kinds of network the trusted origin's host resolves to.
    func originScopes() async throws -> Set<AddressScope> {
        guard let host = trustedOrigin.host else { return [] }
        do {
            return Set(try await resolver.addresses(of: host).map(scope))
        } catch let error as HostResolutionError {
            throw HTTPClientError.connect(url: trustedOrigin.absoluteString, message: error.description)
        }
    }

    static func originText(_ url: URL) -> String {
        var text = url.host ?? url.absoluteString
        if let port = url.port { text += ":\(port)" }
        return text
    }
}
