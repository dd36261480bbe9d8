import Crypto
import Foundation

extension CoordinatorSettings {
    /// The placeholders a child tag template may use.
    public static let childTagPlaceholders = ["{tag}", "{os}", "{arch}", "{variant}", "{-variant}", "{osversion}"]

    /// The tag of one platform's image in a build, from ``childTagTemplate``.
    ///
    /// Placeholders: `{tag}` the build's tag, `{os}`, `{arch}`, `{variant}` (empty without one), `{-variant}`
    /// (`-v8` with a variant, empty without), `{osversion}` (Windows builds, empty otherwise). Platform values
    /// are lowercased. The result is always a valid OCI tag (`[A-Za-z0-9_][A-Za-z0-9._-]{0,127}`): other
    /// characters become `-`, and a result longer than 128 characters is shortened to 119 characters plus `-`
    /// and 8 hex digits of its SHA-256, so two platforms never share a tag.
    ///
    /// ```swift
    /// CoordinatorSettings.childTag(template: "{tag}-{os}-{arch}{-variant}", tag: "1.2",
    ///                              os: "linux", architecture: "arm64", variant: "v8", osVersion: nil)
    /// // "1.2-linux-arm64-v8"
    /// ```
    public static func childTag(
        template: String,
        tag: String,
        os: String,
        architecture: String,
        variant: String?,
        osVersion: String?
    ) -> String {
        let variant = (variant ?? "").lowercased()
        let rendered =
            template
            .replacingOccurrences(of: "{tag}", with: tag)
            .replacingOccurrences(of: "{os}", with: os.lowercased())
            .replacingOccurrences(of: "{arch}", with: architecture.lowercased())
            .replacingOccurrences(of: "{-variant}", with: variant.isEmpty ? "" : "-" + variant)
            .replacingOccurrences(of: "{variant}", with: variant)
            .replacingOccurrences(of: "{osversion}", with: (osVersion ?? "").lowercased())

        var scalars = String.UnicodeScalarView()
        for scalar in rendered.unicodeScalars {
            let allowed =
                ("a"..."z").contains(scalar) || ("A"..."Z").contains(scalar) || ("0"..."9").contains(scalar)
                || scalar == "_" || scalar == "." || scalar == "-"
            scalars.append(allowed ? scalar : "-")
        }
        var result = String(scalars)
        if result.isEmpty {
            result = "_"
        } else if result.hasPrefix(".") || result.hasPrefix("-") {
            result = "_" + result.dropFirst()
        }
        if result.utf8.count > 128 {
            let digest = SHA256.hash(data: Data(result.utf8)).prefix(4).map { String(format: "%02x", $0) }.joined()
            result = String(result.prefix(119)) + "-" + digest
        }
        return result
    }

    /// Why `template` is not a usable child tag template, or nil if it is.
    ///
    /// A template must contain `{tag}`, `{os}` and `{arch}` and one of `{variant}`/`{-variant}`, so that the
    /// platforms of one build get distinct tags, and only known placeholders.
    static func problem(withChildTagTemplate template: String) -> String? {
        let known = childTagPlaceholders.joined(separator: " ")
        var remainder = template
        for placeholder in childTagPlaceholders {
            remainder = remainder.replacingOccurrences(of: placeholder, with: "")
        }
        if remainder.contains("{") || remainder.contains("}") {
            return "a template whose only {…} placeholders are \(known)"
        }
        let required = ["{tag}", "{os}", "{arch}"]
        let missing = required.filter { !template.contains($0) }
        let hasVariant = template.contains("{variant}") || template.contains("{-variant}")
        if !missing.isEmpty || !hasVariant {
            return "a template containing {tag}, {os}, {arch} and {variant} or {-variant}, so that every platform "
                + "gets its own tag (default {tag}-{os}-{arch}{-variant})"
        }
        return nil
    }
}
