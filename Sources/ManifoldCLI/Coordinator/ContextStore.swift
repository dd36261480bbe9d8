import Foundation

#if canImport(ucrt)
import ucrt
#endif

/// How to reach one coordinator: its URL, a user token and the CA that signed its certificate.
public struct CoordinatorContext: Codable, Sendable, Hashable {
    public var coordinator: String
    public var token: String
    /// A PEM file with the coordinator's CA; nil trusts the system's CAs (or plain HTTP).
    public var caFile: String?
    /// `sha256:HEX` of the CA when it was pinned at login.
    public var caFingerprint: String?

    public init(coordinator: String, token: String, caFile: String? = nil, caFingerprint: String? = nil) {
        self.coordinator = coordinator
        self.token = token
        self.caFile = caFile
        self.caFingerprint = caFingerprint
    }
}

/// The user's coordinator contexts, kept in `$XDG_CONFIG_HOME/manifold/contexts.json` (else
/// `~/.config/manifold/`), readable only by the user: the directory is 0700, every file 0600.
///
/// ```swift
/// let store = ContextStore()
/// try store.save(CoordinatorContext(coordinator: "https://ci.example.com:8443", token: secret), named: "ci",
///                caPEM: pem, makeCurrent: true)
/// let (name, context) = try store.current()
/// ```
public struct ContextStore: Sendable {
    public let directory: URL

    struct Document: Codable {
        var current: String?
        var contexts: [String: CoordinatorContext] = [:]
    }

    public init(directory: URL) { self.directory = directory }

    /// The default location, honouring `XDG_CONFIG_HOME`.
    public init(environment: [String: String] = ProcessInfo.processInfo.environment) {
        if let xdg = environment["XDG_CONFIG_HOME"], !xdg.isEmpty {
            directory = URL(fileURLWithPath: xdg).appendingPathComponent("manifold")
        } else {
            directory = FileManager.default.homeDirectoryForCurrentUser.appendingPathComponent(".config/manifold")
        }
    }

    public var file: URL { directory.appendingPathComponent("contexts.json") }

    /// Where the CA of context `name` is stored.
    public func caFile(for name: String) -> URL { directory.appendingPathComponent("\(name).ca.crt") }

    func load() throws -> Document {
        guard FileManager.default.fileExists(atPath: file.path) else { return Document() }
        do {
            return try JSONDecoder().decode(Document.self, from: Data(contentsOf: file))
        } catch {
            throw CLIError("\(file.path) is not a valid contexts file (\(error)); fix it or remove it and log in again")
        }
    }

    /// The names of the stored contexts and which one is current.
    public func list() throws -> (current: String?, contexts: [String: CoordinatorContext]) {
        let document = try load()
        return (document.current, document.contexts)
    }

    /// The context `name`, or the current one when `name` is nil.
    public func context(named name: String?) throws -> (name: String, context: CoordinatorContext)? {
        let document = try load()
        guard let chosen = name ?? document.current else { return nil }
        guard let context = document.contexts[chosen] else {
            if name == nil { return nil }
            let known = document.contexts.keys.sorted()
            throw CLIError(
                "there is no context named \"\(chosen)\" in \(file.path)"
                    + (known.isEmpty ? "; log in first with `manifold login`" : " (known: \(known.joined(separator: ", ")))"))
        }
        return (chosen, context)
    }

    /// Stores `context` as `name` (its CA in `NAME.ca.crt` when `caPEM` is given), replacing a context of that name.
    public func save(_ context: CoordinatorContext, named name: String, caPEM: Data? = nil, makeCurrent: Bool) throws {
        try Self.validateName(name)
        try prepareDirectory()
        var context = context
        if let caPEM {
            let caFile = caFile(for: name)
            try Self.writePrivate(caPEM, to: caFile)
            context.caFile = caFile.path
        }
        var document = try load()
        document.contexts[name] = context
        if makeCurrent || document.current == nil { document.current = name }
        try write(document)
    }

    /// Makes `name` the current context.
    public func use(_ name: String) throws {
        var document = try load()
        guard document.contexts[name] != nil else {
            throw CLIError("there is no context named \"\(name)\"; `manifold context list` shows the stored ones")
        }
        document.current = name
        try write(document)
    }

    /// Removes `name` and its CA; returns whether it existed.
    @discardableResult
    public func remove(_ name: String) throws -> Bool {
        var document = try load()
        guard document.contexts.removeValue(forKey: name) != nil else { return false }
        if document.current == name { document.current = document.contexts.keys.sorted().first }
        try write(document)
        try? FileManager.default.removeItem(at: caFile(for: name))
        return true
    }

    static func validateName(_ name: String) throws {
        let allowed = Set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.")
        guard !name.isEmpty, name.count <= 64, name.allSatisfy(allowed.contains), !name.hasPrefix(".") else {
            throw CLIError("context name \"\(name)\" must be 1–64 letters, digits, '-', '_' or '.' (not starting with '.')")
        }
    }

    private func write(_ document: Document) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        try prepareDirectory()
        try Self.writePrivate(try encoder.encode(document), to: file)
    }

    private func prepareDirectory() throws {
        do {
            try FileManager.default.createDirectory(
                at: directory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
            #if !os(Windows)
            try FileManager.default.setAttributes([.posixPermissions: 0o700], ofItemAtPath: directory.path)
            #endif
        } catch {
            throw CLIError("cannot create \(directory.path): \(error.localizedDescription)")
        }
    }

    /// Writes through a 0600 temporary file renamed into place, so the secret is never readable by others.
    static func writePrivate(_ data: Data, to url: URL) throws {
        let temporary = url.deletingLastPathComponent().appendingPathComponent(".\(url.lastPathComponent).\(UUID().uuidString)")
        do {
            guard FileManager.default.createFile(atPath: temporary.path, contents: nil, attributes: [.posixPermissions: 0o600])
            else { throw CLIError("cannot create \(temporary.path)") }
            let handle = try FileHandle(forWritingTo: temporary)
            try handle.write(contentsOf: data)
            try handle.close()
            #if os(Windows)
            if FileManager.default.fileExists(atPath: url.path) { try FileManager.default.removeItem(at: url) }
            try FileManager.default.moveItem(at: temporary, to: url)
            #else
            // rename(2) replaces the old file atomically: a reader sees the old or the new contexts, never none.
            guard rename(temporary.path, url.path) == 0 else {
                throw CLIError("cannot write \(url.path): \(String(cString: strerror(errno)))")
            }
            #endif
            #if !os(Windows)
            try FileManager.default.setAttributes([.posixPermissions: 0o600], ofItemAtPath: url.path)
            #endif
        } catch let error as CLIError {
            try? FileManager.default.removeItem(at: temporary)
            throw error
        } catch {
            try? FileManager.default.removeItem(at: temporary)
            throw CLIError("cannot write \(url.path): \(error.localizedDescription)")
        }
    }
}
