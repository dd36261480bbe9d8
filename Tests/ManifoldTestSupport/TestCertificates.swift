import Foundation

/// A throw-away PKI made with the openssl CLI: a CA, a server certificate for loopback names,
/// and a client certificate signed by the same CA.
public struct TestCertificates: Sendable {
    public let directory: URL
    public var caCertificate: URL { directory.appendingPathComponent("ca.crt") }
    public var caKey: URL { directory.appendingPathComponent("ca.key") }
    public var serverCertificate: URL { directory.appendingPathComponent("server.crt") }
    public var serverKey: URL { directory.appendingPathComponent("server.key") }
    public var clientCertificate: URL { directory.appendingPathComponent("client.cert") }
    public var clientKey: URL { directory.appendingPathComponent("client.key") }

    /// Generates the CA and leaf certificates in `directory` (created if needed).
    /// The server certificate names `127.0.0.1`, `127.0.0.2` (a second loopback "host"), `::1` and `localhost`.
    public static func generate(in directory: URL, commonName: String = "Manifold Test CA") throws -> TestCertificates {
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let certs = TestCertificates(directory: directory)
        let d = directory.path
        try runChecked(
            "openssl",
            [
                "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                "-keyout", certs.caKey.path, "-out", certs.caCertificate.path, "-days", "2",
                "-subj", "/CN=\(commonName)",
                "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign",
            ])
        try issue(
            certs: certs, name: "server", certificate: certs.serverCertificate, key: certs.serverKey, directory: d,
            extensions:
                "basicConstraints=CA:FALSE\nsubjectAltName=IP:127.0.0.1,IP:127.0.0.2,IP:::1,DNS:localhost\nextendedKeyUsage=serverAuth\n"
        )
        try issue(
            certs: certs, name: "client", certificate: certs.clientCertificate, key: certs.clientKey, directory: d,
            extensions: "basicConstraints=CA:FALSE\nextendedKeyUsage=clientAuth\n"
        )
        return certs
    }

    private static func issue(
        certs: TestCertificates, name: String, certificate: URL, key: URL, directory: String, extensions: String
    ) throws {
        let csr = "\(directory)/\(name).csr"
        let ext = "\(directory)/\(name).ext"
        try extensions.write(toFile: ext, atomically: true, encoding: .utf8)
        try runChecked(
            "openssl",
            [
                "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                "-keyout", key.path, "-out", csr, "-subj", "/CN=\(name == "server" ? "localhost" : "manifold-test-client")",
            ])
        try runChecked(
            "openssl",
            [
                "x509", "-req", "-in", csr, "-CA", certs.caCertificate.path, "-CAkey", certs.caKey.path,
                "-CAcreateserial", "-out", certificate.path, "-days", "2", "-extfile", ext,
            ])
    }

    /// The server key's public-key pin in libcurl's `sha256//BASE64` form.
    public func serverPublicKeyPin() throws -> String {
        let der = directory.appendingPathComponent("server-pub.der")
        let digest = directory.appendingPathComponent("server-pub.sha256")
        try runChecked("openssl", ["pkey", "-in", serverKey.path, "-pubout", "-outform", "DER", "-out", der.path])
        try runChecked("openssl", ["dgst", "-sha256", "-binary", "-out", digest.path, der.path])
        return "sha256//" + (try Data(contentsOf: digest)).base64EncodedString()
    }
}
