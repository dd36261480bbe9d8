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

extension HostSystem {
    /// Who this process runs as: the effective uid (0 is root) and the names of its groups, for `doctor`'s
    /// privilege warnings.
    static func currentIdentity() -> AgentAccount {
        let uid = geteuid()
        var groupNames: [String] = []
        let count = getgroups(0, nil)
        if count > 0 {
            var groups = [gid_t](repeating: 0, count: Int(count))
            let filled = getgroups(count, &groups)
            for gid in groups.prefix(Int(max(0, filled))) + [getegid()] {
                if let entry = getgrgid(gid), let name = entry.pointee.gr_name { groupNames.append(String(cString: name)) }
            }
        }
        let userName = getpwuid(uid).flatMap { $0.pointee.pw_name.map { String(cString: $0) } } ?? "uid \(uid)"
        return AgentAccount(
            name: uid == 0 ? "root (uid 0)" : "\(userName) (uid \(uid))", isPrivileged: uid == 0,
            groups: Array(Set(groupNames)).sorted())
    }
}
#endif
