#if !os(Windows)
import Dispatch
import Foundation

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Turns SIGTERM and SIGINT into shutdown stages: first drain, then cancel.
enum SignalWatcher {
    nonisolated(unsafe) private static var sources: [DispatchSourceSignal] = []

    /// Installs the handlers; `onSignal` gets the signal's name and the new stage.
    static func install(_ shutdown: ShutdownState, onSignal: @escaping @Sendable (String, ShutdownState.Stage) -> Void) {
        for (number, name) in [(SIGTERM, "SIGTERM"), (SIGINT, "SIGINT")] {
            signal(number, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: number, queue: .global())
            source.setEventHandler {
                onSignal(name, shutdown.escalate())
            }
            source.resume()
            sources.append(source)
        }
    }
}
#endif
