import Foundation
import ManifoldStore

/// The coordinator's state directory (`--state-dir`, `/var/lib/manifold` under systemd) and the paths of
/// everything in it.
///
/// ```
/// manifold.yaml        settings (see CoordinatorSettings)
/// manifold.db          SQLite database (plus -wal/-shm)
/// manifold.lock        locked by the running coordinator (holds its pid)
/// pki/ca.crt, ca.key   the coordinator's CA; agents pin ca.crt's fingerprint
/// pki/server.crt/.key  the TLS server certificate
/// pki/secrets.key      256 random bits that encrypt build secrets in the database
/// contexts/            uploaded build contexts, content-addressed
/// registry/config.json the coordinator's own registry credentials (a DOCKER_CONFIG directory)
/// ```
///
/// Everything is owner-only: directories 0700, secret files 0600.
public struct StateDirectory: Sendable {
    /// The directory itself.
    public let root: URL

    /// Creates a value naming `root`; nothing is touched on disk until ``create()``.
    public init(_ root: URL) {
        self.root = root.standardizedFileURL
    }

    /// The settings file, `manifold.yaml`.
    public var configFile: URL { root.appendingPathComponent("manifold.yaml") }
    /// The SQLite database, `manifold.db`.
    public var database: URL { root.appendingPathComponent("manifold.db") }
    /// The lock file a running coordinator holds, `manifold.lock`; see ``StateDirectoryLock``.
    public var lockFile: URL { root.appendingPathComponent("manifold.lock") }
    /// The directory of keys and certificates, `pki/`.
    public var pki: URL { root.appendingPathComponent("pki", isDirectory: true) }
    /// The CA certificate, `pki/ca.crt`.
    public var caCertificate: URL { pki.appendingPathComponent("ca.crt") }
    /// The CA private key, `pki/ca.key`.
    public var caKey: URL { pki.appendingPathComponent("ca.key") }
    /// The TLS server certificate, `pki/server.crt`.
    public var serverCertificate: URL { pki.appendingPathComponent("server.crt") }
    /// The TLS server private key, `pki/server.key`.
    public var serverKey: URL { pki.appendingPathComponent("server.key") }
    /// The key that encrypts build secrets at rest, `pki/secrets.key` (32 random bytes, 0600).
    public var secretsKey: URL { pki.appendingPathComponent("secrets.key") }
    /// Content-addressed build contexts, `contexts/`.
    public var contexts: URL { root.appendingPathComponent("contexts", isDirectory: true) }
    /// The coordinator's registry credentials directory, `registry/`, holding a docker-style `config.json`;
    /// usable as `DOCKER_CONFIG`.
    public var dockerConfigDirectory: URL { root.appendingPathComponent("registry", isDirectory: true) }

    /// The directories ``create()`` makes, in order.
    var directories: [URL] { [root, pki, contexts, dockerConfigDirectory] }

    /// Creates the directory tree with owner-only permissions (0700 dirs, 0600 secret files). Refuses (throws
    /// StateDirectoryError.alreadyInitialised naming the path) if root exists and is non-empty — and then
    /// changes NOTHING.
    ///
    /// An existing empty directory is accepted (a mount point, or a directory systemd's `StateDirectory=`
    /// made) and its permissions are tightened to 0700. Files are written afterwards with
    /// ``writeSecret(_:to:)``.
    public func create() throws {
        let fileManager = FileManager.default
        var isDirectory: ObjCBool = false
        if fileManager.fileExists(atPath: root.path, isDirectory: &isDirectory) {
            guard isDirectory.boolValue else {
                throw StateDirectoryError.notADirectory(root.path)
            }
            let contents: [String]
            do {
                contents = try fileManager.contentsOfDirectory(atPath: root.path)
            } catch {
                throw StateDirectoryError.io(operation: "list", path: root.path, reason: "\(error)")
            }
            guard contents.isEmpty else {
                throw StateDirectoryError.alreadyInitialised(root.path, entries: contents.sorted())
            }
        }
        for directory in directories {
            do {
                try fileManager.createDirectory(
                    at: directory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
                // createDirectory applies the umask and leaves an existing directory alone: set explicitly.
                try fileManager.setAttributes([.posixPermissions: 0o700], ofItemAtPath: directory.path)
            } catch {
                throw StateDirectoryError.io(operation: "create directory", path: directory.path, reason: "\(error)")
            }
        }
    }

    /// Writes `data` to `url` atomically (a temporary file in the same directory, renamed over the target)
    /// with permissions 0600 from the moment the file exists, so the secret is never readable by others.
    public func writeSecret(_ data: Data, to url: URL) throws {
        let directory = url.deletingLastPathComponent()
        let temporary = directory.appendingPathComponent(".\(url.lastPathComponent).\(UUID().uuidString).tmp")
        let descriptor = open(temporary.path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
        guard descriptor >= 0 else {
            throw StateDirectoryError.io(operation: "create", path: temporary.path, reason: Self.errnoDescription())
        }
        var failure: StateDirectoryError?
        data.withUnsafeBytes { buffer in
            var offset = 0
            while offset < buffer.count {
                let written = write(descriptor, buffer.baseAddress! + offset, buffer.count - offset)
                if written < 0 {
                    if errno == EINTR { continue }
                    failure = .io(operation: "write", path: temporary.path, reason: Self.errnoDescription())
                    return
                }
                offset += written
            }
        }
        // fchmod as well as open's mode: open's mode is filtered by the umask, which may only remove bits.
        if failure == nil, fchmod(descriptor, 0o600) != 0 {
            failure = .io(operation: "chmod", path: temporary.path, reason: Self.errnoDescription())
        }
        if failure == nil, fsync(descriptor) != 0 {
            failure = .io(operation: "fsync", path: temporary.path, reason: Self.errnoDescription())
        }
        close(descriptor)
        if failure == nil, rename(temporary.path, url.path) != 0 {
            failure = .io(operation: "rename into place", path: url.path, reason: Self.errnoDescription())
        }
        if let failure {
            unlink(temporary.path)
            throw failure
        }
    }

    /// The secrets key, created (32 random bytes, 0600) when the state directory has none yet — `manifold init`
    /// writes it, and a state directory made by an older version gets it at its first `serve`. A key file that
    /// others may read or that is not 32 bytes is refused: the coordinator does not start.
    public func loadOrCreateSecretsKey() throws -> SecretsKey {
        let path = secretsKey.path
        if !FileManager.default.fileExists(atPath: path) {
            let key = SecretsKey.generate()
            try writeSecret(key.data, to: secretsKey)
            return key
        }
        let attributes: [FileAttributeKey: Any]
        do {
            attributes = try FileManager.default.attributesOfItem(atPath: path)
        } catch {
            throw StateDirectoryError.io(operation: "read", path: path, reason: "\(error)")
        }
        if let mode = (attributes[.posixPermissions] as? NSNumber)?.intValue, mode & 0o077 != 0 {
            throw StateDirectoryError.insecureKey(path, mode: mode)
        }
        guard let data = FileManager.default.contents(atPath: path) else {
            throw StateDirectoryError.io(operation: "read", path: path, reason: "the file cannot be read")
        }
        do {
            return try SecretsKey(data: data)
        } catch {
            throw StateDirectoryError.io(operation: "use the secrets key", path: path, reason: error.description)
        }
    }

    private static func errnoDescription() -> String {
        String(cString: strerror(errno))
    }
}

/// Why a state directory could not be created or written.
public enum StateDirectoryError: Error, CustomStringConvertible, Equatable {
    /// The directory exists and is not empty; `manifold init` refuses to overwrite an existing coordinator.
    case alreadyInitialised(String, entries: [String])
    /// The path exists and is a file.
    case notADirectory(String)
    /// A file-system operation failed.
    case io(operation: String, path: String, reason: String)
    /// A key file is readable or writable by others than its owner.
    case insecureKey(String, mode: Int)

    public var description: String {
        switch self {
        case .alreadyInitialised(let path, let entries):
            let shown = entries.prefix(5).joined(separator: ", ") + (entries.count > 5 ? ", …" : "")
            return "The state directory \(path) already exists and is not empty (it holds \(shown)); "
                + "nothing was changed. Use it with `manifold serve --state-dir \(path)`, "
                + "or choose a new or empty directory for `manifold init`."
        case .notADirectory(let path):
            return "The state directory path \(path) is a file, not a directory; choose a new or empty directory."
        case .io(let operation, let path, let reason):
            return "Could not \(operation) \(path): \(reason)."
        case .insecureKey(let path, let mode):
            return "The key file \(path) has permissions \(String(mode, radix: 8)); others than its owner may use it. "
                + "Run `chmod 600 \(path)` (and consider the secrets it protected exposed)."
        }
    }
}
