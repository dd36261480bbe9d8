import Foundation
import ManifoldAPI
import ManifoldCore

/// The settings of `manifold.yaml`: what `build submit` flags say, kept next to the code.
///
/// ```yaml
/// image: registry.example.com/team/app
/// tags: [1.4.2, latest]
/// dockerfile: Dockerfile
/// build_args:
///   VERSION: 1.4.2            # values stay text as written
/// secrets: [NPM_TOKEN]       # build secrets; values are read from the environment at submit time
/// secret_files: {SSH_KEY: keys/deploy}   # or from files (relative to this file)
/// labels: {org.opencontainers.image.source: https://git.example.com/team/app}
/// platforms:
///   - linux/amd64
///   - linux/arm64
///   - platform: windows/amd64:10.0.17763
///     dockerfile: Dockerfile.windows
///     build_args: {BASE: "mcr.microsoft.com/windows/servercore:ltsc2019"}
///     agent_labels: {pool: windows}
/// max_attempts: 3
/// allow_partial: false
/// ```
///
/// Also `context:` (a directory relative to the file), `git:` (`URL#REF`), `timeout_seconds:`,
/// `child_tag_template:`, and the deprecated `secret_build_args:` (names of build args read from the environment,
/// now sent as build secrets). Unknown keys are errors, so a typo never silently changes a build. The YAML is read by
/// ``YAMLDocument`` (Yams, without anchors, tags or merge keys); errors name the line, column and key.
struct BuildFile: Equatable {
    var image: String?
    var tags: [String]?
    var platforms: [PlatformSpec]?
    var context: String?
    var git: String?
    var dockerfile: String?
    var buildArgs: [String: String] = [:]
    /// Deprecated: names of build args whose values come from the environment; they become build secrets.
    var secretBuildArgs: [String] = []
    /// Names of build secrets whose values come from the environment.
    var secrets: [String] = []
    /// Build secrets read from files: name → path (relative to the build file).
    var secretFiles: [String: String] = [:]
    var labels: [String: String] = [:]
    var maxAttempts: Int?
    var allowPartial: Bool?
    var timeoutSeconds: Int?
    var childTagTemplate: String?

    static let topLevelKeys = [
        "image", "tags", "platforms", "context", "git", "dockerfile", "build_args", "secret_build_args", "secrets",
        "secret_files", "labels", "max_attempts", "allow_partial", "timeout_seconds", "child_tag_template",
    ]
    static let platformKeys = ["platform", "dockerfile", "build_args", "agent_labels"]

    /// The names `build submit` looks for in the context directory.
    static let defaultNames = ["manifold.yaml", "manifold.yml"]

    /// Parses the text of `file` (its name is used in errors only).
    static func parse(_ text: String, file: String) throws(BuildFileError) -> BuildFile {
        let root: YAMLNode?
        do {
            root = try YAMLDocument.parse(text)
        } catch {
            throw BuildFileError(file: file, line: error.line, column: error.column, key: error.key, message: error.message)
        }
        guard let root else { throw BuildFileError(file: file, line: 1, key: nil, message: "the file is empty") }
        var reader = Reader(file: file)
        return try reader.buildFile(root)
    }

    /// Reads the file at `url`, at most ``YAMLDocument/maxBytes`` of it.
    static func load(_ url: URL) throws -> BuildFile {
        let data: Data
        do {
            let handle = try FileHandle(forReadingFrom: url)
            defer { try? handle.close() }
            data = try handle.read(upToCount: YAMLDocument.maxBytes + 1) ?? Data()
        } catch {
            throw CLIError("cannot read the build file \(url.path): \(error.localizedDescription)")
        }
        guard data.count <= YAMLDocument.maxBytes else {
            throw BuildFileError(
                file: url.path, line: 1, key: nil,
                message: "the file is larger than the limit of \(YAMLDocument.maxBytes) bytes (1 MiB) for a build file")
        }
        guard let text = String(data: data, encoding: .utf8) else {
            throw BuildFileError(file: url.path, line: 1, key: nil, message: "the file is not UTF-8 text")
        }
        return try parse(text, file: url.path)
    }

    struct Reader {
        var file: String

        func fail(_ node: YAMLNode, _ key: String?, _ message: String) -> BuildFileError {
            BuildFileError(file: file, line: node.line, column: node.column, key: key, message: message)
        }

        func entries(_ node: YAMLNode, _ key: String?, allowed: [String]) throws(BuildFileError) -> [YAMLNode.Entry] {
            guard case .mapping(let entries) = node.value else {
                throw fail(node, key, "expected a mapping of key: value, found \(node.kind)")
            }
            for entry in entries where !allowed.contains(entry.key) {
                let known = allowed.joined(separator: ", ")
                throw BuildFileError(
                    file: file, line: entry.line, column: entry.column, key: key.map { "\($0).\(entry.key)" } ?? entry.key,
                    message: "unknown key; known keys here: \(known)")
            }
            return entries
        }

        func string(_ node: YAMLNode, _ key: String) throws(BuildFileError) -> String {
            guard case .scalar(let text) = node.value else { throw fail(node, key, "expected text, found \(node.kind)") }
            return text
        }

        func strings(_ node: YAMLNode, _ key: String) throws(BuildFileError) -> [String] {
            switch node.value {
            case .scalar(let text): return [text]
            case .sequence(let items):
                var result: [String] = []
                for (index, item) in items.enumerated() { result.append(try string(item, "\(key)[\(index)]")) }
                return result
            default: throw fail(node, key, "expected a list of text, found \(node.kind)")
            }
        }

        func map(_ node: YAMLNode, _ key: String) throws(BuildFileError) -> [String: String] {
            if case .null = node.value { return [:] }
            guard case .mapping(let entries) = node.value else {
                throw fail(node, key, "expected a mapping of NAME: value, found \(node.kind)")
            }
            var result: [String: String] = [:]
            for entry in entries {
                switch entry.value.value {
                case .scalar(let text): result[entry.key] = text
                case .null: result[entry.key] = ""
                default:
                    throw BuildFileError(
                        file: file, line: entry.line, column: entry.column, key: "\(key).\(entry.key)",
                        message: "expected text, found \(entry.value.kind)")
                }
            }
            return result
        }

        func integer(_ node: YAMLNode, _ key: String, range: ClosedRange<Int>) throws(BuildFileError) -> Int {
            let text = try string(node, key)
            guard let value = Int(text), range.contains(value) else {
                throw fail(node, key, "expected a whole number in \(range.lowerBound)…\(range.upperBound), found \"\(text)\"")
            }
            return value
        }

        func boolean(_ node: YAMLNode, _ key: String) throws(BuildFileError) -> Bool {
            let text = try string(node, key)
            switch text.lowercased() {
            case "true", "yes", "on": return true
            case "false", "no", "off": return false
            default: throw fail(node, key, "expected true or false, found \"\(text)\"")
            }
        }

        func platform(_ node: YAMLNode, _ key: String) throws(BuildFileError) -> Platform {
            let text = try string(node, key)
            do {
                return try Platform(parsing: text)
            } catch {
                throw fail(node, key, error.description)
            }
        }

        mutating func buildFile(_ root: YAMLNode) throws(BuildFileError) -> BuildFile {
            var result = BuildFile()
            for entry in try entries(root, nil, allowed: BuildFile.topLevelKeys) {
                let key = entry.key
                let value = entry.value
                switch key {
                case "image": result.image = try string(value, key)
                case "tags": result.tags = try strings(value, key)
                case "context": result.context = try string(value, key)
                case "git": result.git = try string(value, key)
                case "dockerfile": result.dockerfile = try string(value, key)
                case "build_args": result.buildArgs = try map(value, key)
                case "secret_build_args": result.secretBuildArgs = try strings(value, key)
                case "secrets": result.secrets = try strings(value, key)
                case "secret_files": result.secretFiles = try map(value, key)
                case "labels": result.labels = try map(value, key)
                case "max_attempts": result.maxAttempts = try integer(value, key, range: 1...20)
                case "allow_partial": result.allowPartial = try boolean(value, key)
                case "timeout_seconds": result.timeoutSeconds = try integer(value, key, range: 1...604_800)
                case "child_tag_template": result.childTagTemplate = try string(value, key)
                case "platforms": result.platforms = try platforms(value)
                default: break
                }
            }
            if result.context != nil && result.git != nil {
                throw fail(root, "git", "give either context or git, not both")
            }
            return result
        }

        func platforms(_ node: YAMLNode) throws(BuildFileError) -> [PlatformSpec] {
            guard case .sequence(let items) = node.value else {
                throw fail(node, "platforms", "expected a list of platforms, found \(node.kind)")
            }
            var result: [PlatformSpec] = []
            var seen: [String: Int] = [:]
            for (index, item) in items.enumerated() {
                let key = "platforms[\(index)]"
                var spec: PlatformSpec
                switch item.value {
                case .scalar: spec = PlatformSpec(platform: try platform(item, key))
                case .mapping(let fields):
                    _ = try entries(item, key, allowed: BuildFile.platformKeys)
                    guard let platformField = fields.first(where: { $0.key == "platform" }) else {
                        throw fail(item, key, "give the platform, e.g. \"platform: windows/amd64:10.0.20348\"")
                    }
                    spec = PlatformSpec(platform: try platform(platformField.value, "\(key).platform"))
                    for field in fields {
                        switch field.key {
                        case "dockerfile": spec.dockerfile = try string(field.value, "\(key).dockerfile")
                        case "build_args": spec.buildArgs = try map(field.value, "\(key).build_args")
                        case "agent_labels": spec.agentLabels = try map(field.value, "\(key).agent_labels")
                        default: break
                        }
                    }
                default: throw fail(item, key, "expected a platform like linux/amd64 or a mapping, found \(item.kind)")
                }
                let identity = spec.platform.description
                if let earlier = seen[identity] {
                    throw fail(item, key, "\(identity) is listed twice (also on line \(earlier))")
                }
                seen[identity] = item.line
                result.append(spec)
            }
            return result
        }
    }
}

/// A problem in a build file, with the line, the column when known, and the key:
/// `manifold.yaml:7:17: platforms[1].dockerfile: expected text, found a list`.
struct BuildFileError: Error, CustomStringConvertible, Equatable {
    var file: String
    var line: Int
    var column: Int? = nil
    var key: String?
    var message: String

    var description: String {
        "\(file):\(line):" + (column.map { "\($0):" } ?? "") + " " + (key.map { "\($0): " } ?? "") + message
    }
}
