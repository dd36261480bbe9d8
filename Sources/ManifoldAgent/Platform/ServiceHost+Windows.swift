#if os(Windows)
import Foundation
import WinSDK

/// Runs the agent under the Windows Service Control Manager (`manifold-agent run --service`).
///
/// A stop or shutdown control is the first shutdown signal (drain: finish the job, report, exit); a second stop
/// control cancels the job. While draining, the service reports STOP_PENDING with a growing checkpoint so the SCM
/// keeps waiting.
enum ServiceHost {
    nonisolated(unsafe) private static var statusHandle: SERVICE_STATUS_HANDLE?
    nonisolated(unsafe) private static var shutdown: ShutdownState?
    nonisolated(unsafe) private static var body: (@Sendable () async throws -> Void)?
    nonisolated(unsafe) private static var failure: (any Error)?
    nonisolated(unsafe) private static var checkpoint: DWORD = 0
    private static let name = "manifold-agent"

    static func run(shutdown: ShutdownState, _ work: @escaping @Sendable () async throws -> Void) async throws {
        Self.shutdown = shutdown
        Self.body = work
        // StartServiceCtrlDispatcher blocks its thread until the service stops, so it gets a thread of its own.
        let dispatched: Bool = await withCheckedContinuation { continuation in
            let thread = Thread {
                var serviceName = Array(name.utf16) + [0]
                let ok = serviceName.withUnsafeMutableBufferPointer { namePointer -> Bool in
                    var table = [
                        SERVICE_TABLE_ENTRYW(lpServiceName: namePointer.baseAddress, lpServiceProc: serviceMain),
                        SERVICE_TABLE_ENTRYW(lpServiceName: nil, lpServiceProc: nil),
                    ]
                    return StartServiceCtrlDispatcherW(&table)
                }
                continuation.resume(returning: ok)
            }
            thread.start()
        }
        guard dispatched else {
            throw AgentError(
                "--service only works when the Service Control Manager starts the agent (error \(GetLastError())); "
                    + "install it with agent/install-windows-service.ps1, or run without --service")
        }
        if let failure { throw failure }
    }

    private static func report(_ state: DWORD, exitCode: DWORD = 0, waitHint: DWORD = 0) {
        guard let statusHandle else { return }
        var status = SERVICE_STATUS()
        status.dwServiceType = DWORD(SERVICE_WIN32_OWN_PROCESS)
        status.dwCurrentState = state
        status.dwControlsAccepted =
            state == DWORD(SERVICE_START_PENDING) ? 0 : DWORD(SERVICE_ACCEPT_STOP | SERVICE_ACCEPT_SHUTDOWN)
        status.dwWin32ExitCode = exitCode
        status.dwWaitHint = waitHint
        if state == DWORD(SERVICE_RUNNING) || state == DWORD(SERVICE_STOPPED) {
            status.dwCheckPoint = 0
        } else {
            checkpoint += 1
            status.dwCheckPoint = checkpoint
        }
        SetServiceStatus(statusHandle, &status)
    }

    private static let serviceMain: LPSERVICE_MAIN_FUNCTIONW = { _, _ in
        var serviceName = Array(ServiceHost.name.utf16) + [0]
        ServiceHost.statusHandle = RegisterServiceCtrlHandlerExW(&serviceName, ServiceHost.controlHandler, nil)
        ServiceHost.report(DWORD(SERVICE_START_PENDING), waitHint: 10_000)
        let done = DispatchSemaphore(value: 0)
        Task {
            ServiceHost.report(DWORD(SERVICE_RUNNING))
            do {
                try await ServiceHost.body?()
            } catch {
                ServiceHost.failure = error
            }
            done.signal()
        }
        // Keep the SCM informed while a drain is in progress.
        while done.wait(timeout: .now() + 5) == .timedOut {
            if let stage = ServiceHost.shutdown?.stage, stage != .running {
                ServiceHost.report(DWORD(SERVICE_STOP_PENDING), waitHint: 10_000)
            }
        }
        ServiceHost.report(DWORD(SERVICE_STOPPED), exitCode: ServiceHost.failure == nil ? 0 : 1)
    }

    private static let controlHandler: LPHANDLER_FUNCTION_EX = { control, _, _, _ in
        switch control {
        case DWORD(SERVICE_CONTROL_STOP), DWORD(SERVICE_CONTROL_SHUTDOWN):
            ServiceHost.shutdown?.escalate()
            ServiceHost.report(DWORD(SERVICE_STOP_PENDING), waitHint: 10_000)
            return DWORD(NO_ERROR)
        case DWORD(SERVICE_CONTROL_INTERROGATE):
            return DWORD(NO_ERROR)
        default:
            return DWORD(ERROR_CALL_NOT_IMPLEMENTED)
        }
    }
}
#endif
