/// Tar and gzip for build contexts: packing on the CLI's side, safe unpacking on the agent's.
///
/// - ``TarWriter`` writes a deterministic ustar/PAX archive, optionally gzip-compressed on the fly.
/// - ``TarReader`` reads ustar, PAX and GNU archives entry by entry without holding them in memory.
/// - ``Gzip`` compresses and decompresses whole files with bounded memory.
/// - ``ContextUnpacker`` extracts an untrusted context archive into a directory, refusing anything that could
///   escape it.
public enum Archive {}
