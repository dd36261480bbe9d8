import Foundation
import ManifoldAPI
import ManifoldStore

extension Coordinator {
    /// What `manifold init` prints: shown once, stored only as hashes.
    public struct Initialisation: Sendable {
        public var caFingerprint: String
        public var adminToken: String
        public var joinToken: String
    }

    /// Fills a freshly created state directory: CA and server certificate for `hosts`, the config file, the
    /// secrets key, the database, and an admin and a join token.
    public static func initialise(
        state: StateDirectory, settings: CoordinatorSettings, hosts: [String]
    ) async throws -> Initialisation {
        let ca = try CertificateAuthority.generate()
        let server = try ca.issueServerCertificate(hosts: hosts)
        try state.writeSecret(Data(try ca.certificatePEM().utf8), to: state.caCertificate)
        try state.writeSecret(Data(try ca.privateKeyPEM().utf8), to: state.caKey)
        try state.writeSecret(Data(try server.certificate.pemString().utf8), to: state.serverCertificate)
        try state.writeSecret(Data(try server.privateKey.pemString().utf8), to: state.serverKey)
        try state.writeSecret(Data(settings.yaml().utf8), to: state.configFile)
        let secretsKey = try state.loadOrCreateSecretsKey()
        let store = try Store(path: state.database.path, secretsKey: secretsKey)
        let adminToken = Secrets.generate(prefix: "mfd_admin_")
        let joinToken = Secrets.generate(prefix: "mfd_join_")
        try await store.createToken(name: "initial admin", role: .admin, secretHash: Secrets.hash(adminToken))
        try await store.createToken(name: "initial join", role: .join, secretHash: Secrets.hash(joinToken))
        return Initialisation(caFingerprint: ca.fingerprint, adminToken: adminToken, joinToken: joinToken)
    }
}
