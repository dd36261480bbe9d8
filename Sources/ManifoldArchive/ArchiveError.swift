/// Why an archive could not be written, read or unpacked; `description` names the entry and what to do.
public enum ArchiveError: Error, Sendable, Hashable, CustomStringConvertible {
    /// zlib refused the data (corrupt or truncated gzip stream) or failed internally.
    case gzip(String)
    /// The tar stream is malformed: bad checksum, truncated entry, unparsable header field.
    case corruptTar(String)
    /// An entry was refused because it is unsafe to unpack (absolute path, `..`, escaping link, device file).
    case unsafeEntry(path: String, reason: String)
    /// The archive exceeds a configured limit.
    case limitExceeded(String)
    /// The writer was given something it cannot store.
    case invalidEntry(path: String, reason: String)
    /// A file system operation failed.
    case io(path: String, reason: String)

    public var description: String {
        switch self {
        case .gzip(let reason): "gzip: \(reason)"
        case .corruptTar(let reason): "tar archive is corrupt: \(reason)"
        case .unsafeEntry(let path, let reason): "refused archive entry \"\(path)\": \(reason)"
        case .limitExceeded(let reason): "archive too large: \(reason)"
        case .invalidEntry(let path, let reason): "cannot archive \"\(path)\": \(reason)"
        case .io(let path, let reason): "\(path): \(reason)"
        }
    }
}
