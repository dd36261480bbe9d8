import Foundation
import ManifoldCore
import ManifoldHTTP

extension RegistryClient {
    /// Fetches a manifest exactly as stored. When `reference` is a digest the bytes are verified
    /// against it; a `Docker-Content-Digest` header, when present, must agree with the bytes too.
    public func fetchManifest(
        repository: String, reference: String, accept: [String] = MediaType.allManifestTypes
    ) async throws -> RawManifest {
        let operation = "fetching manifest \(registry)/\(repository):\(reference)"
        var request = RegistryRequest(method: "GET", path: Self.path(repository, "manifests/\(reference)"))
        request.headers.add("Accept", accept.joined(separator: ", "))
        request.scopes = [.pull(repository)]
        let response = try await send(request, operation: operation)
        switch response.status {
        case 200:
            break
        case 404:
            throw RegistryError.notFound(
                kind: "manifest", reference: "\(registry)/\(repository)\(Self.separator(reference))\(reference)",
                errors: RegistryError.details(from: response.body))
        default:
            throw unexpected(response, operation: operation)
        }
        if Int64(response.body.count) > configuration.maxDocumentSize {
            throw RegistryError.tooLarge(
                what: "manifest \(repository)@\(reference)", size: Int64(response.body.count),
                limit: configuration.maxDocumentSize)
        }
        let manifest: RawManifest
        do {
            manifest = try RawManifest(bytes: response.body, mediaType: response.headers["Content-Type"])
        } catch {
            throw RegistryError.protocolViolation(url: response.url.absoluteString, message: "\(error)")
        }
        if let expected = try? Digest(parsing: reference) {
            guard expected.matches(response.body) else {
                throw RegistryError.digestMismatch(
                    what: "manifest \(repository)@\(reference)", expected: expected,
                    actual: Digest.compute(expected.algorithm, of: response.body))
            }
        }
        if let header = response.headers["Docker-Content-Digest"], let claimed = try? Digest(parsing: header) {
            guard claimed.matches(response.body) else {
                throw RegistryError.digestMismatch(
                    what: "manifest \(repository):\(reference) (Docker-Content-Digest)", expected: claimed,
                    actual: Digest.compute(claimed.algorithm, of: response.body))
            }
        }
        return manifest
    }

    /// The descriptor of a manifest (media type, digest, size), or nil when it does not exist.
    public func headManifest(
        repository: String, reference: String, accept: [String] = MediaType.allManifestTypes
    ) async throws -> Descriptor? {
        let operation = "checking manifest \(registry)/\(repository)\(Self.separator(reference))\(reference)"
        var request = RegistryRequest(method: "HEAD", path: Self.path(repository, "manifests/\(reference)"))
        request.headers.add("Accept", accept.joined(separator: ", "))
        request.scopes = [.pull(repository)]
        let response = try await send(request, operation: operation)
        switch response.status {
        case 200:
            let digest: Digest
            if let header = response.headers["Docker-Content-Digest"], let parsed = try? Digest(parsing: header) {
                digest = parsed
            } else if let parsed = try? Digest(parsing: reference) {
                digest = parsed
            } else {
                // Without the header the only trustworthy digest is one computed from the bytes.
                return try await fetchManifest(repository: repository, reference: reference, accept: accept).descriptor
            }
            let size = response.headers["Content-Length"].flatMap { Int64($0) } ?? -1
            return Descriptor(mediaType: response.headers["Content-Type"] ?? "", digest: digest, size: size)
        case 404:
            return nil
        default:
            throw unexpected(response, operation: operation)
        }
    }

    /// Pushes manifest bytes unchanged under a tag or digest, with `Content-Type` set to its media type.
    /// Returns the digest of the bytes, checked against the registry's `Docker-Content-Digest` when sent.
    @discardableResult
    public func pushManifest(repository: String, reference: String, manifest: RawManifest) async throws -> Digest {
        let operation = "pushing manifest \(registry)/\(repository)\(Self.separator(reference))\(reference)"
        var request = RegistryRequest(method: "PUT", path: Self.path(repository, "manifests/\(reference)"))
        request.headers.add("Content-Type", manifest.mediaType)
        request.body = .bytes(manifest.bytes)
        request.scopes = [.push(repository)]
        let response = try await send(request, operation: operation)
        guard [200, 201, 202].contains(response.status) else {
            throw unexpected(response, operation: operation)
        }
        if let header = response.headers["Docker-Content-Digest"], let claimed = try? Digest(parsing: header) {
            let ours =
                claimed.algorithm == manifest.digest.algorithm
                ? manifest.digest : Digest.compute(claimed.algorithm, of: manifest.bytes)
            guard claimed == ours else {
                throw RegistryError.digestMismatch(
                    what: "manifest pushed to \(repository):\(reference)", expected: ours, actual: claimed)
            }
        }
        return manifest.digest
    }

    /// Deletes a manifest by digest (registries refuse deletion by tag).
    public func deleteManifest(repository: String, digest: Digest) async throws {
        let operation = "deleting manifest \(registry)/\(repository)@\(digest)"
        var request = RegistryRequest(method: "DELETE", path: Self.path(repository, "manifests/\(digest)"))
        request.scopes = [RepositoryScope(repository: repository, actions: ["pull", "push", "delete"])]
        let response = try await send(request, operation: operation)
        guard [200, 202, 404].contains(response.status) else { throw unexpected(response, operation: operation) }
    }

    /// Tags in a repository (`/tags/list`), following `Link` pagination.
    public func listTags(repository: String) async throws -> [String] {
        let operation = "listing tags of \(registry)/\(repository)"
        var tags: [String] = []
        var next: URL? = nil
        var first = true
        while first || next != nil {
            var request = RegistryRequest(method: "GET", path: Self.path(repository, "tags/list"))
            request.url = next
            request.scopes = [.pull(repository)]
            let response = try await send(request, operation: operation)
            if response.status == 404 { return [] }
            guard response.status == 200 else { throw unexpected(response, operation: operation) }
            struct Page: Decodable { var tags: [String]? }
            guard let page = try? JSONDecoder().decode(Page.self, from: response.body) else {
                throw RegistryError.protocolViolation(url: response.url.absoluteString, message: "the tag list is not JSON")
            }
            tags += page.tags ?? []
            next = Self.nextLink(response.headers["Link"], relativeTo: response.url)
            first = false
        }
        return tags
    }

    static func nextLink(_ header: String?, relativeTo url: URL) -> URL? {
        guard let header, header.contains("rel=\"next\""),
            let open = header.firstIndex(of: "<"), let close = header.firstIndex(of: ">"), open < close
        else { return nil }
        return URL(string: String(header[header.index(after: open)..<close]), relativeTo: url)?.absoluteURL
    }

    static func separator(_ reference: String) -> String {
        reference.contains(":") ? "@" : ":"
    }
}

extension RawManifest {
    /// A descriptor for this manifest (no platform).
    public var descriptor: Descriptor {
        Descriptor(mediaType: mediaType, digest: digest, size: Int64(bytes.count))
    }
}
