import Foundation
import ManifoldAPI
import ManifoldCore

/// What the templates render: plain strings, booleans and arrays (the templates escape every string). Absent values
/// are nil, so a section such as `{{#reason}}` is left out; names are unique across nesting levels, because Mustache
/// looks an absent name up in the enclosing objects.
enum DashboardPage {
    struct User {
        var userName: String
        var userRole: String
    }

    /// What every page's layout needs.
    struct Base {
        var assetVersion = DashboardAssets.version
        var user: User?
        var csrf: String?
        var flash: String?
    }

    struct SignIn {
        var base: Base
        var signInCSRF: String
        var next: String
    }

    struct Chip {
        var chipPlatform: String
        var chipState: String
        var chipClass: String
        var chipSymbol: String
    }

    struct BuildRow {
        var id: String
        var shortId: String
        var image: String
        /// The list filtered to this image.
        var imageLink: String
        var tags: String
        var buildState: String
        var stateClass: String
        var chips: [Chip]
        var submittedBy: String
        var created: String
        var createdISO: String
        var duration: String
    }

    struct Option {
        var value: String
        var label: String
        var selected: Bool
    }

    struct Builds {
        var base: Base
        var stateOptions: [Option]
        var imageFilter: String
        var builds: [BuildRow]
        var emptyText: String
        var newestLink: String?
        var olderLink: String?
    }

    struct PullLine {
        var pullId: String
        var pullLabel: String
        var pullCommand: String
    }

    struct PlatformRow {
        var rowKey: String
        var platform: String
        /// The platform without its os.version, which has a line of its own.
        var platformBase: String
        var osVersion: String?
        var jobState: String
        var jobStateClass: String
        var phase: String?
        var jobReason: String?
        var agent: String
        var attemptText: String
        var queued: String
        var queuedISO: String?
        var queuedFull: String
        var started: String
        var startedISO: String?
        var startedFull: String
        var finishedAt: String
        var finishedAtISO: String?
        var finishedAtFull: String
        var jobDuration: String
        var digest: String?
        var shortDigest: String
        var verification: String
        var childTag: String
        var hasLog: Bool
        var logURL: String
        var canRetry: Bool
    }

    struct Event {
        var eventISO: String
        var eventTime: String
        var eventType: String
        var eventPlatform: String?
        var eventText: String
    }

    struct Build {
        var base: Base
        var id: String
        var shortId: String
        var image: String
        var tags: String
        var buildState: String
        var stateClass: String
        var final: Bool
        var eventsURL: String
        var submittedBy: String
        var created: String
        var createdISO: String
        var hasFinished: Bool
        var finished: String
        var finishedISO: String
        var duration: String
        var reason: String?
        var notice: String?
        var listDigest: String?
        var listMediaType: String?
        var pullLines: [PullLine]
        var canAct: Bool
        var canCancel: Bool
        var rows: [PlatformRow]
        var events: [Event]
        var eventsTruncated: Bool
        var eventCount: Int
    }

    struct Attempt {
        var number: Int
        var link: String
        var current: Bool
    }

    struct Log {
        var base: Base
        var id: String
        var shortId: String
        var platform: String
        var attempt: Int
        var hasAttempts: Bool
        var attempts: [Attempt]
        var windowText: String
        var earlierLink: String?
        var latestLink: String?
        var rawLink: String
        var statusText: String
        var followURL: String?
        var segments: [DashboardFormat.LogSegment]
    }

    struct AgentAction {
        var target: String
        var actionLabel: String
    }

    struct AgentRow {
        var agentKey: String
        var agentPath: String
        var name: String
        var pool: String
        var labels: String
        var platforms: [String]
        var builders: String
        var version: String
        var agentState: String
        var agentStateClass: String
        var currentJob: String
        var currentBuildLink: String?
        var lastSeen: String
        var lastSeenISO: String?
        var actions: [AgentAction]
    }

    struct Agents {
        var base: Base
        var isAdmin: Bool
        var agents: [AgentRow]
    }

    struct ErrorPage {
        var base: Base
        var status: String
        var heading: String
        var message: String
        var back: String
    }
}

/// How the dashboard writes times, durations, states and log text.
enum DashboardFormat {
    static func time(_ date: Date?) -> String {
        guard let date else { return "" }
        return date.formatted(
            Date.VerbatimFormatStyle(
                format:
                    "\(year: .defaultDigits)-\(month: .twoDigits)-\(day: .twoDigits) \(hour: .twoDigits(clock: .twentyFourHour, hourCycle: .zeroBased)):\(minute: .twoDigits):\(second: .twoDigits) UTC",
                timeZone: TimeZone(identifier: "UTC")!, calendar: Calendar(identifier: .gregorian)))
    }

    static func iso(_ date: Date?) -> String { date.map { $0.formatted(.iso8601) } ?? "" }

    /// The time of day (UTC) for table cells; the full time goes in their `title`.
    static func clock(_ date: Date?) -> String {
        guard let date else { return "" }
        return date.formatted(
            Date.VerbatimFormatStyle(
                format:
                    "\(hour: .twoDigits(clock: .twentyFourHour, hourCycle: .zeroBased)):\(minute: .twoDigits):\(second: .twoDigits)",
                timeZone: TimeZone(identifier: "UTC")!, calendar: Calendar(identifier: .gregorian)))
    }

    static func duration(from start: Date?, to end: Date?) -> String {
        guard let start, let end else { return "" }
        return duration(max(0, end.timeIntervalSince(start)))
    }

    static func duration(_ seconds: TimeInterval) -> String {
        let total = Int(seconds.rounded(.down))
        if total < 60 { return "\(total)s" }
        if total < 3600 { return "\(total / 60)m \(total % 60)s" }
        return "\(total / 3600)h \(total % 3600 / 60)m"
    }

    /// The style class and symbol of a state: the symbol says it without colour.
    static func style(_ state: BuildState) -> (String, String) {
        switch state {
        case .queued: return ("wait", "○")
        case .running, .publishing: return ("run", "●")
        case .published: return ("ok", "✓")
        case .partiallyPublished: return ("wait", "◐")
        case .failed: return ("bad", "✗")
        case .cancelled: return ("off", "–")
        }
    }

    static func style(_ state: JobState) -> (String, String) {
        switch state {
        case .queued: return ("wait", "○")
        case .assigned, .verifying: return ("run", "●")
        case .succeeded: return ("ok", "✓")
        case .failed: return ("bad", "✗")
        case .cancelled: return ("off", "–")
        }
    }

    static func style(_ state: AgentState) -> String {
        switch state {
        case .active: return "ok"
        case .draining: return "wait"
        case .disabled, .left: return "off"
        }
    }

    /// A run of log text in one style: `segmentClass` names its colour and weight (`ansi-fg1 ansi-b`), nil for the
    /// default style.
    struct LogSegment: Equatable {
        var segmentText: String
        var segmentClass: String?
    }

    /// Log text as the page shows it: SGR colours (the 16 basic ones) and bold become styled runs; every other ANSI
    /// escape sequence (256/true colours, cursor movement, window titles) and control character is removed, invalid
    /// UTF-8 is replaced. Tabs and newlines stay.
    static func logSegments(_ data: Data) -> [LogSegment] {
        let text = String(decoding: data, as: UTF8.self)
        var segments: [LogSegment] = []
        var current = String.UnicodeScalarView()
        var colour: Int? = nil
        var bold = false
        func style() -> String? {
            let classes = (colour.map { ["ansi-fg\($0)"] } ?? []) + (bold ? ["ansi-b"] : [])
            return classes.isEmpty ? nil : classes.joined(separator: " ")
        }
        func flush() {
            guard !current.isEmpty else { return }
            let segment = LogSegment(segmentText: String(current), segmentClass: style())
            if let last = segments.last, last.segmentClass == segment.segmentClass {
                segments[segments.count - 1].segmentText += segment.segmentText
            } else {
                segments.append(segment)
            }
            current = String.UnicodeScalarView()
        }
        func apply(_ parameters: String) {
            var codes = parameters.split(separator: ";", omittingEmptySubsequences: false).map { Int($0) ?? 0 }
            if codes.isEmpty { codes = [0] }
            var index = 0
            while index < codes.count {
                let code = codes[index]
                switch code {
                case 0:
                    colour = nil
                    bold = false
                case 1: bold = true
                case 22: bold = false
                case 30...37: colour = code - 30
                case 90...97: colour = code - 90 + 8
                case 39: colour = nil
                case 38, 48:
                    // 256 colours (5;N) or true colour (2;R;G;B): not shown, their numbers skipped.
                    if index + 1 < codes.count { index += codes[index + 1] == 5 ? 2 : (codes[index + 1] == 2 ? 4 : 1) }
                default: break
                }
                index += 1
            }
        }
        var scalars = text.unicodeScalars.makeIterator()
        var pending = scalars.next()
        while let scalar = pending {
            pending = scalars.next()
            if scalar == "\u{1B}" {
                guard let kind = pending else { break }
                pending = scalars.next()
                switch kind {
                case "[":
                    // CSI: parameter and intermediate bytes, then one final byte 0x40–0x7E; `m` sets the style.
                    var parameters = String.UnicodeScalarView()
                    while let next = pending {
                        pending = scalars.next()
                        if (0x40...0x7E).contains(next.value) {
                            if next == "m" {
                                flush()
                                apply(String(parameters))
                            }
                            break
                        }
                        parameters.append(next)
                    }
                case "]":
                    // OSC: up to BEL or ESC \.
                    while let next = pending {
                        pending = scalars.next()
                        if next == "\u{07}" { break }
                        if next == "\u{1B}" {
                            if pending == "\\" { pending = scalars.next() }
                            break
                        }
                    }
                default:
                    break  // a two-byte escape: both dropped
                }
                continue
            }
            if scalar == "\n" || scalar == "\t" {
                current.append(scalar)
            } else if scalar.value < 0x20 || scalar.value == 0x7F || (0x80...0x9F).contains(scalar.value) {
                continue
            } else {
                current.append(scalar)
            }
        }
        flush()
        return segments
    }

    /// The log's text without any styling.
    static func plainText(_ data: Data) -> String {
        logSegments(data).map(\.segmentText).joined()
    }

    /// What an event says, in a line.
    static func describe(_ event: BuildEvent) -> String {
        let data = event.data
        var parts: [String] = []
        for key in ["agent", "phase", "attempt", "digest", "reason", "tags", "line", "by"] {
            if let value = data[key], !value.isEmpty { parts.append(key == "line" ? "“\(value)”" : "\(key) \(value)") }
        }
        for (key, value) in data.sorted(by: { $0.key < $1.key })
        where !["agent", "phase", "attempt", "digest", "reason", "tags", "line", "by"].contains(key) {
            parts.append("\(key) \(value)")
        }
        return parts.joined(separator: ", ")
    }
}
