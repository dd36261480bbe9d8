import Foundation

/// Printable forms of URLs that may carry secrets: presigned or opaque query strings (upload `_state`,
/// S3 signatures) and user info never reach error messages or logs.
public enum URLRedaction {
    /// `url` with scheme, host, port and path only, e.g. `https://reg:5000/v2/app/blobs/uploads/UUID`.
    public static func display(_ url: String) -> String {
        if var components = URLComponents(string: url), components.scheme != nil {
            components.query = nil
            components.fragment = nil
            components.user = nil
            components.password = nil
            if let text = components.string { return text }
        }
        let cut = url.firstIndex(where: { $0 == "?" || $0 == "#" }) ?? url.endIndex
        return String(url[..<cut])
    }

    /// `url` with scheme, host, port and path only.
    public static func display(_ url: URL) -> String { display(url.absoluteString) }
}
