import Foundation

/// A value as the store binds it to a statement or reads it from a row: the storage classes both engines share.
/// Booleans are stored as integers 0/1 on both (a PostgreSQL `boolean` result is read as one too), timestamps as
/// seconds since 1970 in a double.
public enum SQLValue: Sendable, Hashable, CustomStringConvertible {
    case null
    case integer(Int64)
    case real(Double)
    case text(String)
    case blob(Data)

    public var description: String {
        switch self {
        case .null: return "NULL"
        case .integer(let value): return "\(value)"
        case .real(let value): return "\(value)"
        case .text(let value): return "'\(value)'"
        case .blob(let value): return "<\(value.count) bytes>"
        }
    }
}

/// A Swift value that can be bound as a statement argument.
public protocol SQLBindable: Sendable {
    var sqlValue: SQLValue { get }
}

/// A Swift value that can be read from a column. `decode` returns nil when the value has another type, which
/// the row turns into an error naming the column.
public protocol SQLDecodable {
    static func decode(_ value: SQLValue) -> Self?
}

extension SQLValue: SQLBindable, SQLDecodable {
    public var sqlValue: SQLValue { self }
    public static func decode(_ value: SQLValue) -> SQLValue? { value }
}

extension String: SQLBindable, SQLDecodable {
    public var sqlValue: SQLValue { .text(self) }
    public static func decode(_ value: SQLValue) -> String? {
        switch value {
        case .text(let text): return text
        case .blob(let data): return String(decoding: data, as: UTF8.self)
        default: return nil
        }
    }
}

extension Int64: SQLBindable, SQLDecodable {
    public var sqlValue: SQLValue { .integer(self) }
    public static func decode(_ value: SQLValue) -> Int64? {
        switch value {
        case .integer(let integer): return integer
        case .real(let real) where real.rounded() == real && abs(real) < 9.2e18: return Int64(real)
        case .text(let text): return Int64(text)
        default: return nil
        }
    }
}

extension Int: SQLBindable, SQLDecodable {
    public var sqlValue: SQLValue { .integer(Int64(self)) }
    public static func decode(_ value: SQLValue) -> Int? { Int64.decode(value).flatMap { Int(exactly: $0) } }
}

extension Int32: SQLBindable, SQLDecodable {
    public var sqlValue: SQLValue { .integer(Int64(self)) }
    public static func decode(_ value: SQLValue) -> Int32? { Int64.decode(value).flatMap { Int32(exactly: $0) } }
}

extension Double: SQLBindable, SQLDecodable {
    public var sqlValue: SQLValue { .real(self) }
    public static func decode(_ value: SQLValue) -> Double? {
        switch value {
        case .real(let real): return real
        case .integer(let integer): return Double(integer)
        case .text(let text): return Double(text)
        default: return nil
        }
    }
}

extension Bool: SQLBindable, SQLDecodable {
    public var sqlValue: SQLValue { .integer(self ? 1 : 0) }
    public static func decode(_ value: SQLValue) -> Bool? { Int64.decode(value).map { $0 != 0 } }
}

extension Data: SQLBindable, SQLDecodable {
    public var sqlValue: SQLValue { .blob(self) }
    public static func decode(_ value: SQLValue) -> Data? {
        switch value {
        case .blob(let data): return data
        case .text(let text): return Data(text.utf8)
        default: return nil
        }
    }
}

extension Optional: SQLBindable where Wrapped: SQLBindable {
    public var sqlValue: SQLValue { self?.sqlValue ?? .null }
}

extension Optional: SQLDecodable where Wrapped: SQLDecodable {
    public static func decode(_ value: SQLValue) -> Wrapped?? {
        if case .null = value { return .some(nil) }
        return Wrapped.decode(value).map { .some($0) }
    }
}

/// The arguments of one statement, bound to its `?` placeholders in order.
public struct SQLArguments: Sendable, Hashable, ExpressibleByArrayLiteral {
    public var values: [SQLValue]

    public init(arrayLiteral elements: (any SQLBindable)?...) {
        values = elements.map { $0?.sqlValue ?? .null }
    }

    public init<S: Sequence>(_ sequence: S) where S.Element: SQLBindable {
        values = sequence.map(\.sqlValue)
    }

    public init(values: [SQLValue]) { self.values = values }

    public mutating func append(_ value: (any SQLBindable)?) { values.append(value?.sqlValue ?? .null) }
}
