#if os(Windows)
import Foundation
import WinSDK

/// This Windows host: architecture from `GetNativeSystemInfo`, the build from `RtlGetVersion` (which, unlike
/// `GetVersionEx`, is not shimmed by the application manifest) plus the update build revision (UBR) from the
/// registry, giving `major.minor.build.revision` such as `10.0.20348.2227` for os.version matching.
struct HostSystem {
    var os: String
    var architecture: String
    var variant: String?
    var osVersion: String?

    static func detect() -> HostSystem {
        var info = SYSTEM_INFO()
        GetNativeSystemInfo(&info)
        let architecture: String
        switch Int32(info.wProcessorArchitecture) {
        case PROCESSOR_ARCHITECTURE_AMD64: architecture = "amd64"
        case PROCESSOR_ARCHITECTURE_ARM64: architecture = "arm64"
        case PROCESSOR_ARCHITECTURE_INTEL: architecture = "386"
        default: architecture = "unknown"
        }
        return HostSystem(os: "windows", architecture: architecture, variant: nil, osVersion: osVersion())
    }

    private typealias RtlGetVersionFunction = @convention(c) (UnsafeMutablePointer<OSVERSIONINFOW>) -> LONG

    static func osVersion() -> String? {
        guard let ntdll = GetModuleHandleA("ntdll.dll"), let symbol = GetProcAddress(ntdll, "RtlGetVersion") else {
            return nil
        }
        let rtlGetVersion = unsafeBitCast(symbol, to: RtlGetVersionFunction.self)
        var version = OSVERSIONINFOW()
        version.dwOSVersionInfoSize = DWORD(MemoryLayout<OSVERSIONINFOW>.size)
        guard rtlGetVersion(&version) == 0 else { return nil }
        var revision: DWORD = 0
        var size = DWORD(MemoryLayout<DWORD>.size)
        let status = "SOFTWARE\\Microsoft\\Windows NT\\CurrentVersion".withCString(encodedAs: UTF16.self) { key in
            "UBR".withCString(encodedAs: UTF16.self) { value in
                RegGetValueW(HKEY_LOCAL_MACHINE, key, value, DWORD(RRF_RT_REG_DWORD), nil, &revision, &size)
            }
        }
        let ubr = status == ERROR_SUCCESS ? revision : 0
        return "\(version.dwMajorVersion).\(version.dwMinorVersion).\(version.dwBuildNumber).\(ubr)"
    }
}

extension HostSystem {
    /// Who this process runs as: privileged when its token is elevated (an administrator past UAC) or is
    /// LocalSystem (S-1-5-18), for `doctor`'s privilege warnings.
    static func currentIdentity() -> AgentAccount {
        var token: HANDLE? = nil
        guard OpenProcessToken(GetCurrentProcess(), DWORD(TOKEN_QUERY), &token), let token else {
            return AgentAccount(name: "an unknown account", isPrivileged: false, groups: [])
        }
        defer { CloseHandle(token) }
        var elevation = TOKEN_ELEVATION()
        var size = DWORD(MemoryLayout<TOKEN_ELEVATION>.size)
        let elevated =
            GetTokenInformation(token, TokenElevation, &elevation, size, &size) && elevation.TokenIsElevated != 0
        var buffer = [UInt8](repeating: 0, count: 256)
        var needed = DWORD(0)
        let system = buffer.withUnsafeMutableBytes { raw -> Bool in
            guard GetTokenInformation(token, TokenUser, raw.baseAddress, DWORD(raw.count), &needed) else { return false }
            let user = raw.baseAddress!.assumingMemoryBound(to: TOKEN_USER.self).pointee
            return IsWellKnownSid(user.User.Sid, WinLocalSystemSid)
        }
        let name = system ? "LocalSystem" : (elevated ? "an elevated administrator" : "an unelevated account")
        return AgentAccount(name: name, isPrivileged: system || elevated, groups: [])
    }
}
#endif
