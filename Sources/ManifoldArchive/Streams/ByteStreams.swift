import Foundation

/// Something bytes can be read from in pieces: a file, or a decompressing reader on top of one.
public protocol ByteSource: AnyObject {
    /// Reads up to `count` bytes; an empty result means the end of the stream.
    func read(upToCount count: Int) throws -> Data
}

/// Something bytes can be written to in pieces: a file, or a compressing writer on top of one.
public protocol ByteSink: AnyObject {
    /// Writes all of `data`.
    func write(_ data: Data) throws
    /// Flushes buffered data and ends the stream; writing afterwards is an error.
    func finish() throws
}

/// Reads a file through a `FileHandle`.
public final class FileSource: ByteSource {
    private let handle: FileHandle
    private let path: String
    private let closesHandle: Bool

    /// Opens `url` for reading.
    public init(url: URL) throws {
        do {
            handle = try FileHandle(forReadingFrom: url)
        } catch {
            throw ArchiveError.io(path: url.path, reason: "cannot open for reading: \(error.localizedDescription)")
        }
        path = url.path
        closesHandle = true
    }

    /// Reads from an open handle, which the caller keeps ownership of.
    public init(handle: FileHandle, name: String = "input") {
        self.handle = handle
        path = name
        closesHandle = false
    }

    deinit {
        if closesHandle { try? handle.close() }
    }

    public func read(upToCount count: Int) throws -> Data {
        do {
            return try handle.read(upToCount: count) ?? Data()
        } catch {
            throw ArchiveError.io(path: path, reason: "read failed: \(error.localizedDescription)")
        }
    }
}

/// Writes to a file through a `FileHandle`.
public final class FileSink: ByteSink {
    private let handle: FileHandle
    private let path: String
    private let closesHandle: Bool
    private var finished = false

    private let synchronizes: Bool

    /// Creates (or truncates) `url` and writes to it. `synchronize` flushes the file to stable storage on `finish()`,
    /// for files that must survive a power cut; scratch files (unpacked contexts, archives about to be uploaded)
    /// do not need it, and an fsync per file dominated unpacking time.
    public init(url: URL, synchronize: Bool = false) throws {
        #if os(Windows)
        // FileManager.createFile writes atomically (a temporary file, then a rename): fine for one file.
        guard FileManager.default.createFile(atPath: url.path, contents: nil) else {
            throw ArchiveError.io(path: url.path, reason: "cannot create file")
        }
        do {
            handle = try FileHandle(forWritingTo: url)
        } catch {
            throw ArchiveError.io(path: url.path, reason: "cannot open for writing: \(error.localizedDescription)")
        }
        #else
        // One open(2) that creates or truncates: no temporary file and rename per file.
        let descriptor = open(url.path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard descriptor >= 0 else {
            throw ArchiveError.io(path: url.path, reason: "cannot create file: \(String(cString: strerror(errno)))")
        }
        handle = FileHandle(fileDescriptor: descriptor, closeOnDealloc: true)
        #endif
        path = url.path
        closesHandle = true
        synchronizes = synchronize
    }

    /// Writes to an open handle, which the caller keeps ownership of; `finish()` does not close it.
    public init(handle: FileHandle, name: String = "output") {
        self.handle = handle
        path = name
        closesHandle = false
        synchronizes = false
    }

    deinit {
        if closesHandle && !finished { try? handle.close() }
    }

    public func write(_ data: Data) throws {
        guard !data.isEmpty else { return }
        do {
            try handle.write(contentsOf: data)
        } catch {
            throw ArchiveError.io(path: path, reason: "write failed: \(error.localizedDescription)")
        }
    }

    public func finish() throws {
        guard !finished else { return }
        finished = true
        guard closesHandle else { return }
        do {
            if synchronizes { try handle.synchronize() }
            try handle.close()
        } catch {
            throw ArchiveError.io(path: path, reason: "close failed: \(error.localizedDescription)")
        }
    }
}
