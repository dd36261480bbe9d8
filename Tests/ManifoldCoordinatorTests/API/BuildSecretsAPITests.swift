import Foundation
import ManifoldAPI
import ManifoldCore
import ManifoldStore
import ManifoldTestSupport
import Testing

@testable import ManifoldCoordinator

/// Build secrets through the API: limits answered 400 naming them, the key file, values never returned.
@Suite struct BuildSecretsAPITests {
    @Test func requestsOverALimitGet400NamingIt() async throws {
        let fixture = try await CoordinatorFixture.start()
        let token = try await fixture.token(.submitter)
        let digest = try await fixture.uploadContext(token)
        func spec(
            buildArgs: [String: String] = [:], secrets: [String: String] = [:], secretBuildArgs: [String] = [],
            platformArgs: [String: String]? = nil
        ) -> BuildSpec {
            BuildSpec(
                image: "127.0.0.1:5000/team/app", tags: ["1"],
                platforms: [PlatformSpec(platform: Platform(os: "linux", architecture: "amd64"), buildArgs: platformArgs)],
                context: .upload(digest: digest), buildArgs: buildArgs, secrets: secrets, secretBuildArgs: secretBuildArgs)
        }
        let big = String(repeating: "s", count: BuildLimits.maxSecretBytes + 1)
        let many = Dictionary(uniqueKeysWithValues: (0...BuildLimits.maxSecrets).map { ("S\($0)", "v") })
        let manyArgs = Dictionary(uniqueKeysWithValues: (0...BuildLimits.maxBuildArgs).map { ("A\($0)", "v") })
        let cases: [(BuildSpec, field: String, names: [String])] = [
            (spec(secrets: many), "secrets", ["101 secrets", "limit of 100 secrets"]),
            (spec(secrets: ["TOKEN": big]), "secrets.TOKEN", ["65537 bytes", "limit of 65536 bytes per secret"]),
            (spec(buildArgs: ["T": big], secretBuildArgs: ["T"]), "secrets.T", ["limit of 65536 bytes per secret"]),
            (spec(buildArgs: manyArgs), "buildArgs", ["201 build args", "limit of 200 build args"]),
            (spec(platformArgs: manyArgs), "platforms[0].buildArgs", ["limit of 200 build args"]),
            (spec(buildArgs: ["V": big]), "buildArgs.V", ["limit of 65536 bytes per build arg"]),
            (spec(secrets: ["../etc/passwd": "x"]), "secrets", ["/run/secrets/NAME"]),
            (spec(secrets: ["id=x,src=/etc/shadow": "x"]), "secrets", ["not a usable secret name"]),
            (
                spec(buildArgs: ["T": "a"], secretBuildArgs: ["T"], platformArgs: ["T": "b"]), "platforms[0].buildArgs.T",
                ["secrets are build-wide"]
            ),
            (spec(secretBuildArgs: ["MISSING"]), "secretBuildArgs", ["MISSING"]),
        ]
        for (body, field, names) in cases {
            let reply = try await fixture.call("POST", "/api/v1/builds", token: token, json: body)
            #expect(reply.status == 400, "\(field): \(reply.status)")
            #expect(reply.error?.field == field, "\(String(describing: reply.error))")
            for name in names {
                #expect(reply.error?.message.contains(name) == true, "\(String(describing: reply.error)) lacks \(name)")
            }
        }
        // Exactly at the limits is fine, and nothing of the values comes back.
        let atLimit = Dictionary(uniqueKeysWithValues: (1..<BuildLimits.maxSecrets).map { ("S\($0)", "v\($0)") })
            .merging(["BIG": String(repeating: "q", count: BuildLimits.maxSecretBytes)]) { $1 }
        let accepted = try await fixture.call("POST", "/api/v1/builds", token: token, json: spec(secrets: atLimit))
        #expect(accepted.status == 201, "\(String(decoding: accepted.body, as: UTF8.self))")
        #expect(accepted.body.range(of: Data(String(repeating: "q", count: 64).utf8)) == nil)
        let list = try await fixture.call("GET", "/api/v1/builds", token: token).decode(BuildList.self)
        #expect(list.builds.count == 1)
        await fixture.stop()
    }

    @Test func initWritesAPrivateKeyAndServeCreatesOneForOlderStateDirectories() async throws {
        let fixture = try await CoordinatorFixture.start()
        let attributes = try FileManager.default.attributesOfItem(atPath: fixture.state.secretsKey.path)
        #expect((attributes[.posixPermissions] as? NSNumber)?.intValue == 0o600)
        #expect((attributes[.size] as? NSNumber)?.intValue == SecretsKey.byteCount)
        let first = try Data(contentsOf: fixture.state.secretsKey)
        await fixture.stop()

        // A state directory from before the key existed gets one; an existing key is kept.
        let scratch = try ScratchDirectory(prefix: "secrets-key")
        defer { scratch.remove() }
        let state = StateDirectory(scratch.url.appendingPathComponent("state"))
        try state.create()
        #expect(!FileManager.default.fileExists(atPath: state.secretsKey.path))
        let created = try state.loadOrCreateSecretsKey()
        #expect(try state.loadOrCreateSecretsKey().data == created.data)
        #expect(created.data != first)
        #expect(
            (try FileManager.default.attributesOfItem(atPath: state.secretsKey.path)[.posixPermissions] as? NSNumber)?
                .intValue == 0o600)

        // A key others may read, or of the wrong size, stops the coordinator with what to do.
        try FileManager.default.setAttributes([.posixPermissions: 0o644], ofItemAtPath: state.secretsKey.path)
        #expect {
            _ = try state.loadOrCreateSecretsKey()
        } throws: { error in
            "\(error)".contains("chmod 600") && "\(error)".contains("644")
        }
        try state.writeSecret(Data(count: 7), to: state.secretsKey)
        #expect {
            _ = try state.loadOrCreateSecretsKey()
        } throws: { error in
            "\(error)".contains("7 bytes") && "\(error)".contains("32")
        }
    }
}
