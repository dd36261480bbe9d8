import Foundation
import Logging
import ManifoldAPI
import ManifoldStore

extension Coordinator {
    /// What `manifold init` prints: shown once, stored only as hashes.
    public struct Initialisation: Sendable {
        public var caFingerprint: String
        public var adminToken: String
        public var joinToken: String
        /// The join token's limits: it joins agents into the `default` pool until it expires or is used up.
        public var joinTokenExpiresAt: Date
        public var joinTokenUses: Int
    }

    /// The first join token joins this many agents (`manifold init --join-token-uses`).
    public static let defaultInitialJoinTokenUses = InitialJoinToken.uses
    /// … for this long (`manifold init --join-token-hours`).
    public static let defaultInitialJoinTokenLifetime = InitialJoinToken.lifetime

    /// Fills a freshly created state directory: CA and server certificate for `hosts`, the config file,
    /// the secrets key, the database (with the `default` pool, which imposes no labels and allows every platform), an admin token
    /// and a join token for the `default` pool.
    public static func initialise(
        state: StateDirectory, settings: CoordinatorSettings, hosts: [String],
        joinTokenUses: Int = defaultInitialJoinTokenUses, joinTokenLifetime: TimeInterval = defaultInitialJoinTokenLifetime,
        environment: [String: String] = ProcessInfo.processInfo.environment
    ) async throws -> Initialisation {
        let ca = try CertificateAuthority.generate()
        let server = try ca.issueServerCertificate(hosts: hosts)
        try state.writeSecret(Data(try ca.certificatePEM().utf8), to: state.caCertificate)
        try state.writeSecret(Data(try ca.privateKeyPEM().utf8), to: state.caKey)
        try state.writeSecret(Data(try server.certificate.pemString().utf8), to: state.serverCertificate)
        try state.writeSecret(Data(try server.privateKey.pemString().utf8), to: state.serverKey)
        try state.writeSecret(Data(settings.yaml().utf8), to: state.configFile)
        let secretsKey = try state.loadOrCreateSecretsKey()
        let store: Store
        if let url = settings.databaseURL {
            let backend = try await CoordinatorDatabase.connect(
                url: url, settings: settings, environment: environment, logger: Logger(label: "manifold.init"))
            store = try await Store.open(backend: backend, secretsKey: secretsKey)
            guard try await store.listTokens().isEmpty else {
                await backend.close()
                throw CoordinatorError(
                    "the database \(url) is already initialised (it has tokens): to add a replica, copy the state directory "
                        + "of an existing one (see README, Replicas) instead of running init again")
            }
        } else {
            store = try Store(path: state.database.path, secretsKey: secretsKey)
        }

        let adminToken = Secrets.generate(prefix: "mfd_admin_")
        let joinToken = Secrets.generate(prefix: "mfd_join_")
        try await store.createToken(name: "initial admin", role: .admin, secretHash: Secrets.hash(adminToken))
        let expiresAt = store.currentTime().addingTimeInterval(joinTokenLifetime)
        try await store.createToken(
            name: "initial join", role: .join, secretHash: Secrets.hash(joinToken),
            options: TokenOptions(pool: "default", expiresAt: expiresAt, uses: joinTokenUses))
        await store.backend.close()
        return Initialisation(
            caFingerprint: ca.fingerprint, adminToken: adminToken, joinToken: joinToken, joinTokenExpiresAt: expiresAt,
            joinTokenUses: joinTokenUses)
    }
}
