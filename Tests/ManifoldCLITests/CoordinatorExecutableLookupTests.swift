import Testing

@testable import ManifoldCLI

/// Where `manifold init` and `manifold serve` look for `manifold-coordinator`: beside the CLI only, never on `PATH`
/// (a coordinator of another version found there would run with this CLI's arguments).
@Suite struct CoordinatorExecutableLookupTests {
    @Test func besideTheRealFileThenBesideTheLinkItWasStartedBy() {
        let candidates = CoordinatorExecutable.candidates(
            runningExecutable: "/opt/manifold/bin/manifold", invokedAs: "/usr/local/bin/manifold", currentDirectory: "/home/ci")
        #expect(candidates == ["/opt/manifold/bin/manifold-coordinator", "/usr/local/bin/manifold-coordinator"])
        #expect(
            CoordinatorExecutable.candidates(
                runningExecutable: "/usr/bin/manifold", invokedAs: "/usr/bin/manifold", currentDirectory: "/")
                == ["/usr/bin/manifold-coordinator"])
    }

    @Test func aRelativeStartIsTakenFromTheWorkingDirectoryAndABareNameAddsNothing() {
        #expect(
            CoordinatorExecutable.candidates(runningExecutable: nil, invokedAs: "./build/manifold", currentDirectory: "/src")
                == ["/src/build/manifold-coordinator"])
        #expect(
            CoordinatorExecutable.candidates(
                runningExecutable: "/opt/manifold/bin/manifold", invokedAs: "manifold", currentDirectory: "/src")
                == ["/opt/manifold/bin/manifold-coordinator"])
    }
}
