import Foundation
import Testing

@testable import ManifoldCoordinator

@Suite struct StateDirectoryLockTests {
    @Test func aSecondHolderIsRefusedWithTheDirectoryAndPidUntilTheFirstLetsGo() throws {
        let scratch = try BootstrapScratchDirectory()
        defer { scratch.remove() }
        let state = StateDirectory(scratch.url)
        let first = try StateDirectoryLock.acquire(state)
        #expect(try String(contentsOf: state.lockFile, encoding: .utf8) == "\(getpid())\n")
        // flock locks belong to the open file, so a second open in the same process conflicts like another process.
        #expect(throws: StateDirectoryLockError.held(directory: state.root.path, pid: getpid())) {
            try StateDirectoryLock.acquire(state)
        }
        let message = "\(StateDirectoryLockError.held(directory: state.root.path, pid: 4242))"
        #expect(message.contains(state.root.path) && message.contains("process 4242"), "\(message)")
        first.release()
        let second = try StateDirectoryLock.acquire(state)
        second.release()
    }
}
