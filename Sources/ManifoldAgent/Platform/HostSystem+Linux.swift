#if !os(Windows)
import Foundation

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// The kernel's idea of this host, from `uname(2)`.
struct HostSystem {
    var os: String
    var architecture: String
    var variant: String?
    var osVersion: String?

    static func detect() -> HostSystem {
        var name = utsname()
        uname(&name)
        let machine = withUnsafeBytes(of: &name.machine) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
        #if os(macOS)
        let os = "darwin"
        #else
        let os = "linux"
        #endif
        let (architecture, variant) = map(machine: machine)
        return HostSystem(os: os, architecture: architecture, variant: variant, osVersion: nil)
    }

    /// `uname -m` names to OCI architecture and variant.
    static func map(machine: String) -> (String, String?) {
        switch machine {
        case "x86_64", "amd64": ("amd64", nil)
        case "aarch64", "arm64": ("arm64", "v8")
        case "armv7l", "armv7": ("arm", "v7")
        case "armv6l": ("arm", "v6")
        case "armv5tel", "armv5l": ("arm", "v5")
        case "i386", "i686": ("386", nil)
        case "ppc64le": ("ppc64le", nil)
        case "s390x": ("s390x", nil)
        case "riscv64": ("riscv64", nil)
        default: (machine, nil)
        }
    }
}
#endif
