#if os(Windows)
import Foundation
import WinSDK

/// Turns Ctrl+C, Ctrl+Break, console close and a service stop (delivered by the service wrapper as a console
/// control event) into shutdown stages: first drain, then cancel.
enum SignalWatcher {
    nonisolated(unsafe) private static var state: ShutdownState?
    nonisolated(unsafe) private static var callback: (@Sendable (String, ShutdownState.Stage) -> Void)?

    static func install(_ shutdown: ShutdownState, onSignal: @escaping @Sendable (String, ShutdownState.Stage) -> Void) {
        state = shutdown
        callback = onSignal
        SetConsoleCtrlHandler(
            { event in
                guard let state = SignalWatcher.state else { return false }
                let name =
                    switch event {
                    case DWORD(CTRL_C_EVENT): "Ctrl+C"
                    case DWORD(CTRL_BREAK_EVENT): "Ctrl+Break"
                    case DWORD(CTRL_SHUTDOWN_EVENT): "system shutdown"
                    default: "console close"
                    }
                SignalWatcher.callback?(name, state.escalate())
                return true
            }, true)
    }
}
#endif
