import Foundation

/// A job's build secrets on disk: an owner-only directory (0700, an owner-only ACL on Windows) in the job's
/// private work directory, with one owner-only file per secret, named after it and holding exactly its value.
/// Builders read them from there (`--secret id=NAME,src=FILE`, or `MANIFOLD_SECRETS_DIR` for the command
/// builder), so a value is never in a builder's arguments or environment. ``remove()`` deletes them as soon as
/// the build ends; a crashed agent's leftovers go with the work directory at its next start.
struct BuildSecrets: Sendable {
    /// The directory holding the files.
    let directory: URL
    /// Secret name → its file.
    let files: [String: URL]

    /// Writes `secrets` into `parent/secrets/`. Names were checked by the coordinator (letters, digits, `_`, `-`,
    /// `.`); one that could leave the directory is refused here too.
    static func write(_ secrets: [String: String], in parent: URL) throws -> BuildSecrets {
        let directory = parent.appendingPathComponent("secrets", isDirectory: true)
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        try FilePermissions.restrictToOwner(directory, isDirectory: true)
        var files: [String: URL] = [:]
        for (name, value) in secrets {
            guard !name.isEmpty, name != ".", name != "..", !name.contains("/"), !name.contains("\\"),
                !name.contains(","), !name.contains("=")
            else {
                throw AgentError("the job has a secret named \"\(name)\", which cannot be a file name; not building")
            }
            let file = directory.appendingPathComponent(name)
            // Created empty, made owner-only, then written: the value never sits in a file others could open.
            guard FileManager.default.createFile(atPath: file.path, contents: nil) else {
                throw AgentError("cannot create the secret file \(file.path)")
            }
            try FilePermissions.restrictToOwner(file, isDirectory: false)
            let handle = try FileHandle(forWritingTo: file)
            defer { try? handle.close() }
            try handle.write(contentsOf: Data(value.utf8))
            files[name] = file
        }
        return BuildSecrets(directory: directory, files: files)
    }

    /// Deletes the files and the directory.
    func remove() {
        try? FileManager.default.removeItem(at: directory)
    }
}
