import Foundation
import ManifoldAPI
import ManifoldCore
import ManifoldHTTP
import ManifoldRegistry
import ManifoldTestSupport
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// The chaos suite: real coordinator, agent and registry processes under faults. Scenarios run one at a time
/// (their timing figures would mean nothing on a crowded machine); each lives in its own file as an extension.
/// `deploy/chaos/README.md` says what each proves and how to run one alone.
///
/// With `MANIFOLD_TEST_REPLICAS=3` every scenario whose harness does not ask for replicas runs against three replicas
/// on PostgreSQL behind HAProxy instead of one SQLite coordinator; a scenario that means something else then says so
/// in its documentation, and one that has no replicated meaning is disabled with the reason.
@Suite(.serialized) struct ChaosTests {}

/// Settings every scenario's coordinator starts with: short leases so a lost agent is noticed in seconds, and
/// short retry backoffs so a recovered registry is tried again at once.
enum Chaos {
    static let leaseTTLSeconds = 5
    /// `LeaseReaper`'s period.
    static let reaperSeconds = 2.0
    static let environment = [
        "MANIFOLD_RETRY_BACKOFF_SECONDS": "1", "MANIFOLD_MAX_RETRY_BACKOFF_SECONDS": "2", "MANIFOLD_LOG_LEVEL": "debug",
    ]
    static let platforms = [
        Platform(os: "linux", architecture: "amd64"), Platform(os: "linux", architecture: "arm64"),
        Platform(os: "linux", architecture: "arm", variant: "v7"),
    ]
    static let repository = "e2e/app"

    /// Prints one figure of a scenario, `chaos: …` (`chaos: [N replicas] …` when `MANIFOLD_TEST_REPLICAS` replicates
    /// the coordinator), for CI logs and deploy/chaos/README.md.
    static func figure(_ text: String) {
        let replicas = (try? AgentHarness.replicasFromEnvironment()) ?? 0
        print("chaos: \(replicas > 0 ? "[\(replicas) replicas] " : "")\(text)")
    }

    static func seconds(_ duration: Duration) -> String {
        String(format: "%.1f s", Double(duration.components.seconds) + Double(duration.components.attoseconds) / 1e18)
    }

    static func seconds(_ interval: TimeInterval) -> String {
        String(format: "%.1f s", interval)
    }

    /// A command-builder script that pushes a tiny image of its own with curl (no image builder involved): one
    /// layer holding the job's tag, platform and a nonce, so every attempt pushes a different digest. It writes
    /// the digest to MANIFOLD_DIGEST_FILE and appends `TAG PLATFORM DIGEST` to `ledger`. Builder output goes through
    /// `say`, which also writes it to `printed/NAME.log` when `printed` is given (NAME: the build arg `NAME`, else
    /// the attempt's tag). `before` runs first, `after` last.
    static func pushScript(ledger: URL, printed: URL? = nil, before: String = "", after: String = "") -> String {
        """
        #!/bin/sh
        set -eu
        PRINTED='\(printed.map { $0.path } ?? "")'
        PRINTED_FILE="$PRINTED/${MANIFOLD_BUILD_ARG_NAME:-$MANIFOLD_TAG}.log"
        if [ -n "$PRINTED" ]; then : > "$PRINTED_FILE"; fi
        say() {
            printf '%s\\n' "$*"
            if [ -n "$PRINTED" ]; then printf '%s\\n' "$*" >> "$PRINTED_FILE"; fi
        }
        \(before)
        ref="$MANIFOLD_IMAGE_REFERENCE"
        registry="${ref%%/*}"
        rest="${ref#*/}"
        repository="${rest%:*}"
        tag="${rest##*:}"
        os="${MANIFOLD_PLATFORM%%/*}"
        rest="${MANIFOLD_PLATFORM#*/}"
        arch="${rest%%/*}"
        variant=""
        case "$rest" in */*) variant=",\\"variant\\":\\"${rest#*/}\\"" ;; esac
        work=$(mktemp -d)
        trap 'rm -rf "$work"' EXIT
        mkdir "$work/root"
        printf 'tag %s platform %s nonce %s-%s\\n' "$MANIFOLD_TAG" "$MANIFOLD_PLATFORM" "$(date +%s%N)" "$$" \\
            > "$work/root/id.txt"
        tar -C "$work/root" -cf "$work/layer.tar" id.txt
        gzip -n -c "$work/layer.tar" > "$work/layer.tgz"
        sha() { sha256sum "$1" | cut -d' ' -f1; }
        size() { wc -c < "$1" | tr -d ' '; }
        printf '{"architecture":"%s","os":"%s"%s,"rootfs":{"type":"layers","diff_ids":["sha256:%s"]},"config":{}}' \\
            "$arch" "$os" "$variant" "$(sha "$work/layer.tar")" > "$work/config.json"
        upload() {
            if curl -sf -o /dev/null -I "http://$registry/v2/$repository/blobs/$2"; then return 0; fi
            location=$(curl -sSf --retry 3 -X POST -o /dev/null -w '%header{location}' \\
                "http://$registry/v2/$repository/blobs/uploads/")
            case "$location" in http*) ;; *) location="http://$registry$location" ;; esac
            case "$location" in *\\?*) separator='&' ;; *) separator='?' ;; esac
            curl -sSf -X PUT -H 'Content-Type: application/octet-stream' --data-binary "@$1" -o /dev/null \\
                "$location${separator}digest=$2"
        }
        layer="sha256:$(sha "$work/layer.tgz")"
        config="sha256:$(sha "$work/config.json")"
        upload "$work/layer.tgz" "$layer"
        upload "$work/config.json" "$config"
        printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",' > "$work/manifest.json"
        printf '"config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"%s","size":%s},' \\
            "$config" "$(size "$work/config.json")" >> "$work/manifest.json"
        printf '"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"%s","size":%s}]}' \\
            "$layer" "$(size "$work/layer.tgz")" >> "$work/manifest.json"
        digest="sha256:$(sha "$work/manifest.json")"
        curl -sSf --retry 3 -X PUT -H 'Content-Type: application/vnd.oci.image.manifest.v1+json' \\
            --data-binary "@$work/manifest.json" -o /dev/null "http://$registry/v2/$repository/manifests/$tag"
        printf '%s\\n' "$digest" > "$MANIFOLD_DIGEST_FILE"
        printf '%s %s %s\\n' "$MANIFOLD_TAG" "$MANIFOLD_PLATFORM" "$digest" >> '\(ledger.path)'
        say "pushed $ref as $digest"
        \(after)
        """
    }

    /// Shell that holds the build until `file` exists.
    static func hold(until file: URL) -> String {
        "while [ ! -e '\(file.path)' ]; do sleep 0.1; done"
    }

    /// One image a builder pushed: its attempt tag, platform and digest (a line of the ledger).
    struct Pushed: Hashable {
        var tag: String
        var platform: String
        var digest: String
    }

    static func ledger(_ file: URL) -> [Pushed] {
        ((try? String(contentsOf: file, encoding: .utf8)) ?? "").split(separator: "\n").compactMap { line in
            let fields = line.split(separator: " ").map(String.init)
            return fields.count == 3 ? Pushed(tag: fields[0], platform: fields[1], digest: fields[2]) : nil
        }
    }

    /// Bytes under `path` (files only, symlinks not followed).
    static func diskUsage(_ path: String) -> Int64 {
        guard let enumerator = FileManager.default.enumerator(atPath: path) else { return 0 }
        var total: Int64 = 0
        while let item = enumerator.nextObject() as? String {
            let attributes = try? FileManager.default.attributesOfItem(atPath: "\(path)/\(item)")
            if attributes?[.type] as? FileAttributeType == .typeRegular {
                total += (attributes?[.size] as? NSNumber)?.int64Value ?? 0
            }
        }
        return total
    }

    /// The database files (`manifold.db`, its WAL and shared memory) of a coordinator state directory, in bytes.
    static func databaseBytes(state: String) -> Int64 {
        ["manifold.db", "manifold.db-wal", "manifold.db-shm"].reduce(0) { total, name in
            let attributes = try? FileManager.default.attributesOfItem(atPath: "\(state)/\(name)")
            return total + ((attributes?[.size] as? NSNumber)?.int64Value ?? 0)
        }
    }

    /// The coordinator's database in bytes: its SQLite files, or with replicas the tables and indexes of its
    /// PostgreSQL schema.
    static func databaseBytes(of harness: AgentHarness) async throws -> Int64 {
        guard harness.isReplicated else { return databaseBytes(state: harness.state) }
        let rows = try await harness.query(
            """
            SELECT COALESCE(SUM(pg_total_relation_size(c.oid)), 0) FROM pg_class c
            JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = current_schema() AND c.relkind = 'r'
            """)
        return Int64(rows.first ?? "") ?? 0
    }

    /// `PRAGMA integrity_check` of the coordinator's database, by the sqlite3 CLI (`ok` when sound).
    static func integrityCheck(state: String) throws -> String {
        try runChecked("sqlite3", ["\(state)/manifold.db", "PRAGMA integrity_check;"]).trimmingCharacters(
            in: .whitespacesAndNewlines)
    }

    static func kib(_ bytes: Int64) -> String {
        String(format: "%.1f KiB", Double(bytes) / 1024)
    }
}

/// Reads what users pull straight from a plain-HTTP registry.
struct RegistryReader {
    let pool: RegistryClientPool
    let client: RegistryClient

    init(host: String) throws {
        var configuration = RegistryConfiguration(certsDirectories: [], credentials: StaticCredentials())
        configuration.plainHTTPHosts = [host]
        pool = RegistryClientPool(configuration: configuration)
        client = try pool.client(for: host)
    }

    func shutdown() {
        pool.shutdown()
    }

    /// The digest `reference` resolves to, nil when the tag does not exist.
    func digest(_ reference: String, repository: String = Chaos.repository) async throws -> Digest? {
        try await client.headManifest(repository: repository, reference: reference)?.digest
    }

    /// The manifest digests a list (an OCI index or a Docker manifest list) under `reference` holds.
    func children(_ reference: String, repository: String = Chaos.repository) async throws -> (list: Digest, children: [Digest]) {
        let manifest = try await client.fetchManifest(repository: repository, reference: reference)
        let index = try JSONDecoder().decode(ImageIndex.self, from: manifest.bytes)
        return (manifest.digest, index.manifests.map(\.digest))
    }

    func tags(repository: String = Chaos.repository) async throws -> [String] {
        try await client.listTags(repository: repository)
    }
}

/// Stops a test registry and starts it again on the same port and storage, as an outage would.
final class RegistryOutage {
    let registry: TestRegistry
    private var restarted: ManagedProcess?
    private var runs = 0

    init(_ registry: TestRegistry) {
        self.registry = registry
    }

    /// Stops whichever registry process is serving now.
    func stop() {
        if let restarted {
            restarted.stop()
        } else {
            registry.process.stop()
        }
    }

    /// Starts `docker-registry` again with the registry's own configuration; returns once it listens.
    func start() throws {
        runs += 1
        let port = Int(registry.host.split(separator: ":").last ?? "") ?? 0
        let process = try ManagedProcess(
            name: "registry-restart-\(runs)", executable: "docker-registry",
            arguments: ["serve", registry.directory.appendingPathComponent("config.yml").path],
            logDirectory: registry.directory)
        restarted = process
        try Loopback.waitUntilListening(port: port, process: process)
    }

    func tearDown() {
        restarted?.stop()
        registry.stop()
    }
}

extension AgentHarness {
    /// Polls the build every 50 ms until `done` holds; returns the view and when it was first seen.
    func watch(
        _ id: String, timeout: Duration, until done: (BuildView) -> Bool
    ) async throws -> (view: BuildView, at: ContinuousClock.Instant)? {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if let view = try? await build(id), done(view) { return (view, ContinuousClock.now) }
            try await Task.sleep(for: .milliseconds(50))
        }
        return nil
    }

    /// A write the coordinator must refuse while its disk is full: creating a token.
    func probeWrite() async throws -> (status: Int, body: String) {
        let response = try await CoordinatorProcess.call(
            coordinator, "POST", "/api/v1/tokens", token: admin,
            json: CreateTokenRequest(name: "probe-\(UUID().uuidString.prefix(6))", role: .viewer))
        return (response.status, String(decoding: response.body, as: UTF8.self))
    }

    /// The coordinator's `/readyz` status.
    func readiness() async throws -> Int {
        try await coordinator.client.execute(
            HTTPRequest(method: "GET", url: URL(string: "\(baseURL)/readyz")!)
        ).status
    }
}
