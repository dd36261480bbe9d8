#if os(Windows)
import Foundation
import WinSDK

/// Owner-only permissions for the state directory and credential files.
enum FilePermissions {
    /// Replaces the DACL with one protected entry granting full control to the current user (the service account
    /// when running as a service), so other users and inherited ACEs cannot read the credential.
    static func restrictToOwner(_ url: URL, isDirectory: Bool) throws {
        var token: HANDLE? = nil
        guard OpenProcessToken(GetCurrentProcess(), DWORD(TOKEN_QUERY), &token), let token else {
            throw AgentError("OpenProcessToken failed (\(GetLastError())) while securing \(url.path)")
        }
        defer { CloseHandle(token) }
        var length: DWORD = 0
        _ = GetTokenInformation(token, TokenUser, nil, 0, &length)
        let buffer = UnsafeMutableRawPointer.allocate(byteCount: Int(length), alignment: 8)
        defer { buffer.deallocate() }
        guard GetTokenInformation(token, TokenUser, buffer, length, &length) else {
            throw AgentError("GetTokenInformation failed (\(GetLastError())) while securing \(url.path)")
        }
        let user = buffer.assumingMemoryBound(to: TOKEN_USER.self).pointee.User.Sid
        var access = EXPLICIT_ACCESS_W()
        access.grfAccessPermissions = DWORD(GENERIC_ALL)
        access.grfAccessMode = SET_ACCESS
        access.grfInheritance = DWORD(isDirectory ? (OBJECT_INHERIT_ACE | CONTAINER_INHERIT_ACE) : 0)
        access.Trustee.TrusteeForm = TRUSTEE_IS_SID
        access.Trustee.TrusteeType = TRUSTEE_IS_USER
        access.Trustee.ptstrName = user.map { UnsafeMutablePointer<WCHAR>(OpaquePointer($0)) }
        var acl: PACL? = nil
        guard SetEntriesInAclW(1, &access, nil, &acl) == ERROR_SUCCESS, let acl else {
            throw AgentError("SetEntriesInAcl failed while securing \(url.path)")
        }
        defer { LocalFree(acl) }
        let status = url.path.withCString(encodedAs: UTF16.self) { path in
            SetNamedSecurityInfoW(
                UnsafeMutablePointer(mutating: path), SE_FILE_OBJECT,
                SECURITY_INFORMATION(DACL_SECURITY_INFORMATION | PROTECTED_DACL_SECURITY_INFORMATION), nil, nil, acl,
                nil)
        }
        guard status == ERROR_SUCCESS else {
            throw AgentError("SetNamedSecurityInfo failed (\(status)) while securing \(url.path)")
        }
    }
}
#endif
