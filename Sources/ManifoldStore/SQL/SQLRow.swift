import Foundation

/// One result row. Columns are found by name, ignoring case: PostgreSQL folds unquoted identifiers to lower case,
/// SQLite keeps them as written, and the store's SQL names them the same way for both.
public struct SQLRow: Sendable {
    public let columns: [String]
    public let values: [SQLValue]

    public init(columns: [String], values: [SQLValue]) {
        precondition(columns.count == values.count, "a row has one value per column")
        self.columns = columns
        self.values = values
    }

    func index(of name: String) -> Int? {
        if let exact = columns.firstIndex(of: name) { return exact }
        let lowered = name.lowercased()
        return columns.firstIndex { $0.lowercased() == lowered }
    }

    /// The raw value of `column`, `.null` when the row has no such column.
    public func value(_ column: String) -> SQLValue {
        index(of: column).map { values[$0] } ?? .null
    }

    /// The value of `column` as `T`. A missing column or a value of another type is a programming error in the
    /// store's SQL, not bad input: it stops with the column's name and the value found.
    public subscript<T: SQLDecodable>(_ column: String) -> T {
        guard let index = index(of: column) else {
            preconditionFailure("the query has no column \(column) (it has \(columns.joined(separator: ", ")))")
        }
        guard let value = T.decode(values[index]) else {
            preconditionFailure("column \(column) holds \(values[index]), not a \(T.self)")
        }
        return value
    }

    /// The value of the first column as `T`, as `String.fetchOne` reads a scalar.
    public func first<T: SQLDecodable>(as type: T.Type) -> T? {
        guard let value = values.first else { return nil }
        return T.decode(value)
    }
}
