import Foundation
import FuzzSupport
import ManifoldRegistry

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

let configFile = FileManager.default.temporaryDirectory.appendingPathComponent(
    "manifold-fuzz-docker-config-\(getpid()).json")
let registries = ["registry.example.com", "docker.io", "127.0.0.1:5000"]

/// The docker CLI's `config.json`: any file content gives a credential, none, or a `DockerConfigError` (a
/// `CredentialHelperError` when it names a helper, none of which exists here); storing a password in a file that
/// reads then returns exactly that password, with the file's other content kept readable.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzDockerConfig(_ bytes: UnsafePointer<UInt8>?, _ count: Int) -> CInt {
    do { try fuzzInput(bytes, count).write(to: configFile) } catch { fatalError("cannot write \(configFile.path): \(error)") }
    let config = DockerConfig(file: configFile, helperSearchPath: [])
    let readable = runBlocking {
        var readable = true
        for registry in registries {
            do {
                _ = try await config.credential(for: registry)
            } catch is DockerConfigError {
                readable = false
            } catch is CredentialHelperError {
            } catch {
                fuzzExpect(false, "an unexpected error type reading the docker config: \(error)")
            }
        }
        return readable
    }
    guard readable else { return 0 }
    runBlocking {
        let registry = registries[count % registries.count]
        do {
            try await config.store(username: "fuzz", password: "pa:ss wörd", for: registry)
        } catch is DockerConfigError {
            return
        } catch is CredentialHelperError {
            return  // the file names a helper for it, which does not exist here
        } catch {
            fuzzExpect(false, "an unexpected error type storing in the docker config: \(error)")
        }
        do {
            let stored = try await config.credential(for: registry)
            fuzzExpect(
                stored == .basic(username: "fuzz", password: "pa:ss wörd"),
                "stored a password for \(registry) but read back \(String(describing: stored))")
        } catch {
            fuzzExpect(false, "the docker config does not read back after storing for \(registry): \(error)")
        }
    }
    return 0
}
