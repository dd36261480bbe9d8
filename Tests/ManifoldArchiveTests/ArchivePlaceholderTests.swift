import ManifoldArchive
import Testing

@Test func archiveModuleLinks() {
    #expect(String(describing: Archive.self) == "Archive")
}
