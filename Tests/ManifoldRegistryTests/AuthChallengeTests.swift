import Testing

@testable import ManifoldRegistry

@Suite struct AuthChallengeTests {
    @Test func parsesBearerWithQuotedValues() {
        let challenges = AuthChallenge.parse(
            header:
                #"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/ubuntu:pull""#
        )
        #expect(challenges.count == 1)
        #expect(challenges[0].scheme == "bearer")
        #expect(challenges[0].realm == "https://auth.docker.io/token")
        #expect(challenges[0].service == "registry.docker.io")
        #expect(challenges[0].scopes == ["repository:library/ubuntu:pull"])
    }

    @Test func parsesBasic() {
        let challenges = AuthChallenge.parse(header: #"Basic realm="Registry Realm""#)
        #expect(challenges == [AuthChallenge(scheme: "basic", parameters: ["realm": "Registry Realm"])])
    }

    @Test func parsesSeveralChallengesInOneHeader() {
        let challenges = AuthChallenge.parse(
            header: #"Basic realm="basic", Bearer realm="https://a.example/token", service="svc", error="invalid_token""#)
        #expect(challenges.map(\.scheme) == ["basic", "bearer"])
        #expect(challenges[1].parameters["error"] == "invalid_token")
        #expect(challenges[1].service == "svc")
    }

    @Test func parsesSeveralHeadersAndUnquotedValues() {
        let challenges = AuthChallenge.parse(["Basic realm=simple", #"BEARER Realm="https://x/token",Scope="a b""#])
        #expect(challenges.count == 2)
        #expect(challenges[0].realm == "simple")
        #expect(challenges[1].scheme == "bearer")
        #expect(challenges[1].scopes == ["a", "b"])
    }

    @Test func unescapesQuotedPairs() {
        let challenges = AuthChallenge.parse(header: #"Bearer realm="https://x/t\"oken", service="s\\v""#)
        #expect(challenges.first?.realm == #"https://x/t"oken"#)
        #expect(challenges.first?.service == #"s\v"#)
    }

    @Test(arguments: ["", "   ", ",,,"])
    func emptyHeadersYieldNothing(_ header: String) {
        #expect(AuthChallenge.parse(header: header).isEmpty)
    }

    @Test func schemeWithoutParameters() {
        #expect(AuthChallenge.parse(header: "Negotiate").map(\.scheme) == ["negotiate"])
    }
}

@Suite struct RepositoryScopeTests {
    @Test func printsAndParses() throws {
        let scope = try #require(RepositoryScope(parsing: "repository:team/app:push,pull"))
        #expect(scope.repository == "team/app")
        #expect(scope.actions == ["pull", "push"])
        #expect(scope.description == "repository:team/app:pull,push")
        #expect(RepositoryScope(parsing: "registry:catalog:*") == nil)
    }

    @Test func normalizeMergesAndPutsPushFirst() {
        let scopes = RepositoryScope.normalize([.pull("b/source"), .pull("a/target"), .push("a/target"), .pull("c")])
        #expect(scopes.map(\.description) == ["repository:a/target:pull,push", "repository:b/source:pull", "repository:c:pull"])
    }
}

@Suite struct RetryPolicyTests {
    @Test(arguments: [
        (408, true), (429, true), (500, true), (502, true), (503, true), (501, false), (404, false), (400, false), (401, false),
    ])
    func retryableStatuses(_ status: Int, _ expected: Bool) {
        #expect(RetryPolicy.isRetryable(status: status) == expected)
    }

    @Test func retryAfterSecondsWins() {
        let policy = RetryPolicy(baseDelay: .milliseconds(1), maxDelay: .seconds(5))
        #expect(policy.delay(afterAttempt: 1, retryAfter: "2") == .seconds(2))
    }

    @Test func retryAfterHTTPDate() throws {
        let seconds = try #require(RetryPolicy.parseRetryAfter("Wed, 21 Oct 2015 07:28:00 GMT"))
        #expect(seconds == 0)  // in the past
        #expect(RetryPolicy.parseRetryAfter("soon") == nil)
    }

    @Test func backoffGrowsAndIsCapped() {
        let policy = RetryPolicy(baseDelay: .milliseconds(100), maxDelay: .milliseconds(400))
        for attempt in 1...8 {
            let delay = policy.delay(afterAttempt: attempt, retryAfter: nil)
            let ceiling = min(Duration.milliseconds(100) * (1 << (attempt - 1)), .milliseconds(400))
            #expect(delay <= ceiling)
            #expect(delay >= ceiling / 2)
        }
    }
}
