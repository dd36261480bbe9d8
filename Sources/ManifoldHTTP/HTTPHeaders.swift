import Foundation

/// An ordered list of HTTP header fields with case-insensitive names; a name may repeat.
///
/// ```swift
/// var headers: HTTPHeaders = ["Accept": "application/json"]
/// headers.add("Accept", "text/plain")
/// headers["accept"]            // "application/json"
/// headers.values("ACCEPT")     // ["application/json", "text/plain"]
/// ```
public struct HTTPHeaders: Sendable, Hashable, Sequence, ExpressibleByDictionaryLiteral {
    private struct Field: Sendable, Hashable {
        var name: String
        var value: String
        var key: String { name.lowercased() }
    }

    private var fields: [Field] = []

    public init() {}

    public init(_ pairs: [(String, String)]) {
        fields = pairs.map { Field(name: $0.0, value: $0.1) }
    }

    public init(dictionaryLiteral elements: (String, String)...) {
        self.init(elements)
    }

    /// Appends a field, keeping any existing fields of the same name.
    public mutating func add(_ name: String, _ value: String) {
        fields.append(Field(name: name, value: value))
    }

    /// Replaces every field of this name with one field, or appends it.
    public mutating func replaceOrAdd(_ name: String, _ value: String) {
        let key = name.lowercased()
        guard let first = fields.firstIndex(where: { $0.key == key }) else {
            add(name, value)
            return
        }
        fields[first] = Field(name: name, value: value)
        var index = fields.index(after: first)
        while index < fields.endIndex {
            if fields[index].key == key { fields.remove(at: index) } else { index += 1 }
        }
    }

    /// Removes every field of this name.
    public mutating func remove(_ name: String) {
        let key = name.lowercased()
        fields.removeAll { $0.key == key }
    }

    /// The first value of the named field.
    public subscript(_ name: String) -> String? {
        let key = name.lowercased()
        return fields.first { $0.key == key }?.value
    }

    /// Every value of the named field, in order.
    public func values(_ name: String) -> [String] {
        let key = name.lowercased()
        return fields.filter { $0.key == key }.map(\.value)
    }

    /// Whether a field of this name is present.
    public func contains(_ name: String) -> Bool {
        self[name] != nil
    }

    public var isEmpty: Bool { fields.isEmpty }

    public var count: Int { fields.count }

    public func makeIterator() -> some IteratorProtocol<(name: String, value: String)> {
        fields.lazy.map { (name: $0.name, value: $0.value) }.makeIterator()
    }

    public static func == (lhs: HTTPHeaders, rhs: HTTPHeaders) -> Bool {
        lhs.fields.count == rhs.fields.count
            && zip(lhs.fields, rhs.fields).allSatisfy { $0.key == $1.key && $0.value == $1.value }
    }

    public func hash(into hasher: inout Hasher) {
        for field in fields {
            hasher.combine(field.key)
            hasher.combine(field.value)
        }
    }
}

extension HTTPHeaders: CustomStringConvertible {
    /// The fields one per line, with sensitive values (Authorization, Cookie, …) redacted.
    public var description: String {
        redacted(HTTPClientConfiguration.defaultSensitiveHeaders)
    }

    /// The fields one per line, with the values of `sensitive` names (and always of Authorization,
    /// Proxy-Authorization, Cookie and Set-Cookie) replaced by `<redacted>`.
    public func redacted(_ sensitive: [String]) -> String {
        let always = ["authorization", "proxy-authorization", "cookie", "set-cookie"]
        let keys = Set(sensitive.map { $0.lowercased() } + always)
        return fields.map { "\($0.name): \(keys.contains($0.key) ? "<redacted>" : $0.value)" }.joined(separator: "\n")
    }
}
