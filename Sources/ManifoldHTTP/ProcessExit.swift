#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#elseif canImport(ucrt)
import ucrt
#endif

/// Ends a command-line process without running `atexit` handlers.
///
/// libcurl's TLS library (OpenSSL 3 on Debian) frees its global locks in an `atexit` handler. `exit()` runs that
/// handler on the calling thread while others still live, and one of them taking a freed lock crashes the process
/// *after* it did its work: the user sees status 139 instead of the command's own. `HTTPClient`'s own threads are
/// stopped and joined by an exit handler of ManifoldHTTP's that runs before OpenSSL's; ending without handlers also
/// spares the threads of other libraries (SwiftNIO's event loops in the coordinator's commands, a Swift concurrency
/// thread finishing a task). Every output stream is flushed first, so nothing printed is lost; files and
/// connections are closed by the kernel as with any exit.
public enum ProcessExit {
    public static func now(_ status: Int32) -> Never {
        fflush(nil)
        _exit(status)
    }
}
