import Testing

@testable import ManifoldCoordinator

@Suite("Child tags")
struct ChildTagTests {
    let template = CoordinatorSettings.defaults.childTagTemplate

    func tag(_ tag: String, _ os: String, _ arch: String, _ variant: String? = nil, _ osVersion: String? = nil) -> String {
        CoordinatorSettings.childTag(
            template: template, tag: tag, os: os, architecture: arch, variant: variant, osVersion: osVersion)
    }

    @Test func defaultTemplate() {
        #expect(tag("1.2.3", "linux", "amd64") == "1.2.3-linux-amd64")
        #expect(tag("1.2.3", "linux", "arm64", "v8") == "1.2.3-linux-arm64-v8")
        #expect(tag("latest", "Windows", "AMD64", nil, "10.0.20348.2340") == "latest-windows-amd64")
        #expect(tag("latest", "linux", "arm", "") == "latest-linux-arm")
    }

    @Test func everyPlaceholder() {
        let rendered = CoordinatorSettings.childTag(
            template: "{tag}_{os}_{arch}_{variant}{-variant}_{osversion}", tag: "v1", os: "windows",
            architecture: "amd64", variant: "V2", osVersion: "10.0.17763.5458")
        #expect(rendered == "v1_windows_amd64_v2-v2_10.0.17763.5458")
    }

    @Test func resultIsAlwaysAValidTag() {
        #expect(tag("release candidate", "linux", "amd64") == "release-candidate-linux-amd64")
        #expect(tag("a/b+c", "linux", "arm", "v7") == "a-b-c-linux-arm-v7")
        #expect(tag(".hidden", "linux", "amd64") == "_hidden-linux-amd64")
        #expect(tag("Keep_Case", "linux", "amd64") == "Keep_Case-linux-amd64")

        let long = String(repeating: "x", count: 200)
        let amd = tag(long, "linux", "amd64")
        let arm = tag(long, "linux", "arm64")
        #expect(amd.count == 128)
        #expect(arm.count == 128)
        #expect(amd != arm)
        for rendered in [amd, arm] {
            #expect(rendered.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || "._-".contains($0)) })
        }
    }
}
