import Foundation

#if canImport(ucrt)
import ucrt
#endif

/// A failure the user can act on, printed as `error: MESSAGE` with exit code 1.
struct CLIError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

/// Where the terminal is and how wide it is.
enum Terminal {
    /// Whether standard output is an interactive terminal (not a pipe or a file).
    static var isStandardOutputTerminal: Bool {
        #if os(Windows)
        return _isatty(1) != 0
        #else
        return isatty(STDOUT_FILENO) == 1
        #endif
    }

    /// Columns of the terminal: `COLUMNS`, else the window size of standard output, else 120.
    static var columns: Int {
        if let text = ProcessInfo.processInfo.environment["COLUMNS"], let value = Int(text), value > 20 { return value }
        #if os(Linux) || os(macOS)
        var size = winsize()
        if ioctl(STDOUT_FILENO, UInt(TIOCGWINSZ), &size) == 0, size.ws_col > 20 { return Int(size.ws_col) }
        #endif
        return 120
    }

    static func writeError(_ text: String) {
        FileHandle.standardError.write(Data(text.utf8))
    }

    /// Writes to standard output and flushes, so redraws and pipes see whole lines at once.
    static func write(_ text: String) {
        print(text, terminator: "")
        fflush(nil)
    }
}
