import Foundation

/// Limits on what one build request may carry. Every one is checked before anything is stored, and a request
/// over one is answered 400 naming the limit.
public enum BuildLimits {
    /// The most secrets one build may have.
    public static let maxSecrets = 100
    /// The longest secret value, in UTF-8 bytes (64 KiB).
    public static let maxSecretBytes = 64 << 10
    /// The most build args one build may have (build-wide and per platform, each counted once per place).
    public static let maxBuildArgs = 200
    /// The longest build arg value, in UTF-8 bytes (64 KiB).
    public static let maxBuildArgBytes = 64 << 10
    /// The longest secret or build arg name.
    public static let maxNameLength = 128
}

extension BuildSpec {
    /// The spec without secret values, and the secrets: ``secrets`` plus the values of the deprecated
    /// ``secretBuildArgs``, which leave ``buildArgs``. What the coordinator stores in plain text is the first; the
    /// second is only ever stored encrypted.
    ///
    /// Call on a spec that passed ``validate()``.
    public func separatingSecrets() -> (spec: BuildSpec, secrets: [String: String]) {
        var spec = self
        var secrets = self.secrets
        for name in secretBuildArgs {
            if let value = spec.buildArgs.removeValue(forKey: name) { secrets[name] = value }
        }
        spec.secrets = [:]
        spec.secretBuildArgs = []
        return (spec, secrets)
    }

    /// Whether `name` can name a secret: it becomes a file name (`/run/secrets/NAME`, one file per secret in the
    /// command builder's directory) and a field of `--secret id=NAME,src=FILE`.
    public static func isValidSecretName(_ name: String) -> Bool {
        guard !name.isEmpty, name.utf8.count <= BuildLimits.maxNameLength, name != ".", name != ".." else { return false }
        return name.unicodeScalars.allSatisfy { scalar in
            (scalar.isASCII && (scalar.properties.isAlphabetic || ("0"..."9").contains(scalar)))
                || scalar == "_" || scalar == "-" || scalar == "."
        }
    }

    /// Checks the secrets and build args against ``BuildLimits`` and each other.
    func validateSecretsAndBuildArgs() throws(APIValidationError) {
        // A secret build arg's value is checked as a secret below.
        try Self.validateBuildArgs(buildArgs.filter { !secretBuildArgs.contains($0.key) }, field: "buildArgs")
        for (index, platform) in platforms.enumerated() {
            guard let arguments = platform.buildArgs else { continue }
            try Self.validateBuildArgs(arguments, field: "platforms[\(index)].buildArgs")
            for name in secretBuildArgs where arguments[name] != nil {
                throw APIValidationError(
                    field: "platforms[\(index)].buildArgs.\(name)",
                    message:
                        "\(name) is a secret (secretBuildArgs), and secrets are build-wide; give its value once in \"secrets\"")
            }
        }
        for name in secretBuildArgs where buildArgs[name] == nil {
            throw APIValidationError(field: "secretBuildArgs", message: "\"\(name)\" is not one of the build args")
        }
        for name in secretBuildArgs {
            if let value = secrets[name], value != buildArgs[name] {
                throw APIValidationError(
                    field: "secrets.\(name)",
                    message: "\(name) is given in \"secrets\" and, with another value, in \"secretBuildArgs\"; give it once")
            }
        }
        let all = separatingSecrets().secrets
        guard all.count <= BuildLimits.maxSecrets else {
            throw APIValidationError(
                field: "secrets",
                message: "\(all.count) secrets is over the limit of \(BuildLimits.maxSecrets) secrets per build")
        }
        for (name, value) in all.sorted(by: { $0.key < $1.key }) {
            guard Self.isValidSecretName(name) else {
                throw APIValidationError(
                    field: "secrets",
                    message: "\"\(name.prefix(200))\" is not a usable secret name; use 1–\(BuildLimits.maxNameLength) "
                        + "letters, digits, \"_\", \"-\" or \".\" (it becomes the file /run/secrets/NAME)")
            }
            guard value.utf8.count <= BuildLimits.maxSecretBytes else {
                throw APIValidationError(
                    field: "secrets.\(name)",
                    message: "the value is \(value.utf8.count) bytes, over the limit of \(BuildLimits.maxSecretBytes) "
                        + "bytes per secret")
            }
        }
    }

    static func validateBuildArgs(_ arguments: [String: String], field: String) throws(APIValidationError) {
        guard arguments.count <= BuildLimits.maxBuildArgs else {
            throw APIValidationError(
                field: field,
                message: "\(arguments.count) build args is over the limit of \(BuildLimits.maxBuildArgs) build args")
        }
        for (name, value) in arguments.sorted(by: { $0.key < $1.key }) {
            guard !name.isEmpty, name.utf8.count <= BuildLimits.maxNameLength, !name.contains("=") else {
                throw APIValidationError(
                    field: field,
                    message: "\"\(name.prefix(200))\" is not a usable build arg name; use 1–\(BuildLimits.maxNameLength) "
                        + "characters without \"=\"")
            }
            guard value.utf8.count <= BuildLimits.maxBuildArgBytes else {
                throw APIValidationError(
                    field: "\(field).\(name)",
                    message: "the value is \(value.utf8.count) bytes, over the limit of \(BuildLimits.maxBuildArgBytes) "
                        + "bytes per build arg")
            }
        }
    }
}

extension JobSpec {
    /// The secrets the builder gets as build secrets: ``secrets``, plus the values of ``secretBuildArgs`` when a
    /// coordinator of protocol 2 sent them as build args.
    public var buildSecrets: [String: String] {
        var result = secrets
        for name in secretBuildArgs {
            if let value = buildArgs[name] { result[name] = value }
        }
        return result
    }

    /// The build args the builder gets as `--build-arg`: never one that is secret.
    public var plainBuildArgs: [String: String] {
        buildArgs.filter { !secretBuildArgs.contains($0.key) }
    }
}
