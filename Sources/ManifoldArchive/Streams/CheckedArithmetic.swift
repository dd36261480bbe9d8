/// Arithmetic on sizes that come from archives or configuration: a result that does not fit saturates at the
/// bound instead of trapping, and callers compare it with their limit.
extension Int64 {
    /// `self + other`, or `Int64.max` / `Int64.min` when the sum does not fit.
    func saturatingAdding(_ other: Int64) -> Int64 {
        let (sum, overflow) = addingReportingOverflow(other)
        return overflow ? (other > 0 ? .max : .min) : sum
    }

    /// `self * other`, or `Int64.max` / `Int64.min` when the product does not fit.
    func saturatingMultiplied(by other: Int64) -> Int64 {
        let (product, overflow) = multipliedReportingOverflow(by: other)
        return overflow ? ((self < 0) == (other < 0) ? .max : .min) : product
    }
}
