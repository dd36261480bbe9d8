import Mustache

/// The dashboard's pages as Mustache templates, compiled into the coordinator (no files to ship or lose).
///
/// Every value is written with `{{name}}`, which HTML-escapes `< > & " '`; no template uses the unescaped forms
/// (`{{{…}}}` or `{{&…}}`), and a test checks that. Pages extend `layout` through template inheritance, so no page
/// body is ever pasted in as pre-rendered HTML either. No template holds a script or a style attribute: the
/// Content-Security-Policy allows neither inline.
enum DashboardTemplates {
    static let layout = """
        <!doctype html>
        <html lang="en">
        <head>
        <meta charset="utf-8">
        <meta name="viewport" content="width=device-width, initial-scale=1">
        <meta name="color-scheme" content="light dark">
        <meta name="referrer" content="no-referrer">
        <title>{{$title}}Manifold{{/title}}</title>
        <link rel="stylesheet" href="/static/dashboard.css?v={{base.assetVersion}}">
        <script src="/static/dashboard.js?v={{base.assetVersion}}" defer></script>
        </head>
        <body>
        <a class="skip" href="#main">Skip to content</a>
        <header class="top">
        <nav aria-label="Main"><a class="brand" href="/builds">Manifold</a>{{#base.user}} <a href="/builds">Builds</a> <a href="/agents">Agents</a>{{/base.user}}</nav>
        {{#base.user}}<form class="signout" method="post" action="/sign-out"><span class="who">{{userName}} <span class="role">{{userRole}}</span></span><input type="hidden" name="csrf" value="{{base.csrf}}"><button type="submit">Sign out</button></form>{{/base.user}}
        </header>
        <main id="main">
        {{#base.flash}}<p class="flash" role="alert">{{base.flash}}</p>{{/base.flash}}
        {{$content}}{{/content}}
        </main>
        </body>
        </html>

        """

    static let signIn = """
        {{<layout}}{{$title}}Sign in · Manifold{{/title}}{{$content}}
        <h1>Sign in</h1>
        <form class="card signin" method="post" action="/sign-in">
        <p>Sign in with a Manifold API token (viewer, submitter or admin): the one <code>manifold login</code> uses, or one an admin made with <code>manifold token create</code>.</p>
        <label for="token">API token</label>
        <input id="token" name="token" type="password" autocomplete="off" spellcheck="false" required autofocus>
        <input type="hidden" name="csrf" value="{{signInCSRF}}">
        <input type="hidden" name="next" value="{{next}}">
        <button type="submit">Sign in</button>
        </form>
        {{/content}}{{/layout}}

        """

    static let builds = """
        {{<layout}}{{$title}}Builds · Manifold{{/title}}{{$content}}
        <h1>Builds</h1>
        <form class="filters" method="get" action="/builds" role="search">
        <label>State <select name="state">{{#stateOptions}}<option value="{{value}}"{{#selected}} selected{{/selected}}>{{label}}</option>{{/stateOptions}}</select></label>
        <label>Image (exact) <input type="text" name="image" value="{{imageFilter}}" placeholder="registry/repository" spellcheck="false"></label>
        <button type="submit">Filter</button>
        </form>
        <div id="builds-live" class="live" data-changes="/live/changes">
        <div class="scroll"><table class="builds">
        <caption class="vh">Builds, newest first</caption>
        <thead><tr><th scope="col">Build</th><th scope="col">Image</th><th scope="col">Tags</th><th scope="col">State</th><th scope="col">Platforms</th><th scope="col">Submitted by</th><th scope="col">Created</th><th scope="col">Duration</th></tr></thead>
        <tbody>
        {{#builds}}<tr id="build-{{id}}">
        <td><a href="/builds/{{id}}">{{shortId}}</a></td>
        <td class="mono"><a href="{{imageLink}}" title="Builds of {{image}}">{{image}}</a></td>
        <td class="mono">{{tags}}</td>
        <td><span class="state s-{{stateClass}}">{{buildState}}</span></td>
        <td class="chips">{{#chips}}<span class="chip s-{{chipClass}}" title="{{chipPlatform}}: {{chipState}}"><span aria-hidden="true">{{chipSymbol}} </span>{{chipPlatform}}<span class="vh"> {{chipState}}</span></span> {{/chips}}</td>
        <td>{{submittedBy}}</td>
        <td><time datetime="{{createdISO}}">{{created}}</time></td>
        <td>{{duration}}</td>
        </tr>
        {{/builds}}
        {{^builds}}<tr><td colspan="8">{{emptyText}}</td></tr>{{/builds}}
        </tbody></table></div>
        </div>
        <nav class="paging" aria-label="Pages">{{#newestLink}}<a href="{{newestLink}}">← Newest</a>{{/newestLink}} {{#olderLink}}<a href="{{olderLink}}">Older →</a>{{/olderLink}}</nav>
        {{/content}}{{/layout}}

        """

    static let build = """
        {{<layout}}{{$title}}{{image}} · build {{shortId}} · Manifold{{/title}}{{$content}}
        <p class="crumbs"><a href="/builds">Builds</a> /</p>
        <div id="build-live" class="live" data-events="{{eventsURL}}" data-final="{{final}}">
        <h1><span class="mono">{{image}}</span> <span class="state s-{{stateClass}}">{{buildState}}</span></h1>
        <dl class="summary">
        <dt>Build</dt><dd class="mono">{{id}}</dd>
        <dt>Tags</dt><dd class="mono">{{tags}}</dd>
        <dt>Submitted by</dt><dd>{{submittedBy}}</dd>
        <dt>Created</dt><dd><time datetime="{{createdISO}}">{{created}}</time></dd>
        {{#hasFinished}}<dt>Finished</dt><dd><time datetime="{{finishedISO}}">{{finished}}</time> ({{duration}})</dd>{{/hasFinished}}
        {{^hasFinished}}<dt>Running for</dt><dd>{{duration}}</dd>{{/hasFinished}}
        {{#reason}}<dt>Reason</dt><dd>{{reason}}</dd>{{/reason}}
        {{#notice}}<dt>Notice</dt><dd>{{notice}}</dd>{{/notice}}
        {{#listDigest}}<dt>List</dt><dd class="mono">{{listDigest}}{{#listMediaType}} <span class="muted">({{listMediaType}})</span>{{/listMediaType}}</dd>{{/listDigest}}
        </dl>
        {{#pullLines}}<div class="pull"><label for="{{pullId}}">{{pullLabel}}</label><div class="copyline"><input id="{{pullId}}" class="mono" type="text" readonly value="{{pullCommand}}"><button type="button" class="copy" data-copy="{{pullId}}" hidden>Copy</button></div></div>{{/pullLines}}
        <h2>Platforms</h2>
        <div class="scroll"><table class="platforms">
        <caption class="vh">One row per platform</caption>
        <thead><tr><th scope="col">Platform</th><th scope="col">State</th><th scope="col">Agent</th><th scope="col">Attempt</th><th scope="col">Queued</th><th scope="col">Started</th><th scope="col">Finished</th><th scope="col">Duration</th><th scope="col">Digest</th><th scope="col">Verification</th><th scope="col">Child tag</th><th scope="col">Log</th>{{#canAct}}<th scope="col">Action</th>{{/canAct}}</tr></thead>
        <tbody>
        {{#rows}}<tr id="job-{{rowKey}}" data-platform="{{platform}}" data-state="{{jobState}}">
        <th scope="row" class="mono">{{platformBase}}{{#osVersion}}<br><span class="muted">os.version {{osVersion}}</span>{{/osVersion}}</th>
        <td><span class="state s-{{jobStateClass}}">{{jobState}}</span>{{#phase}} <span class="muted">{{phase}}</span>{{/phase}}{{#jobReason}}<br><span class="reason">{{jobReason}}</span>{{/jobReason}}</td>
        <td class="nowrap">{{agent}}</td>
        <td class="nowrap">{{attemptText}}</td>
        <td class="time">{{#queuedISO}}<time datetime="{{queuedISO}}" title="{{queuedFull}}">{{queued}}</time>{{/queuedISO}}</td>
        <td class="time">{{#startedISO}}<time datetime="{{startedISO}}" title="{{startedFull}}">{{started}}</time>{{/startedISO}}</td>
        <td class="time">{{#finishedAtISO}}<time datetime="{{finishedAtISO}}" title="{{finishedAtFull}}">{{finishedAt}}</time>{{/finishedAtISO}}</td>
        <td class="time">{{jobDuration}}</td>
        <td class="mono">{{#digest}}<abbr title="{{digest}}">{{shortDigest}}</abbr>{{/digest}}</td>
        <td>{{verification}}</td>
        <td class="mono tag">{{childTag}}</td>
        <td>{{#hasLog}}<a href="{{logURL}}">log</a>{{/hasLog}}</td>
        {{#canAct}}<td>{{#canRetry}}<form method="post" action="/builds/{{id}}/retry"><input type="hidden" name="csrf" value="{{base.csrf}}"><input type="hidden" name="platform" value="{{platform}}"><button type="submit" id="retry-{{rowKey}}" aria-label="Retry {{platform}}">Retry</button></form>{{/canRetry}}</td>{{/canAct}}
        </tr>
        {{/rows}}
        </tbody></table></div>
        {{#canCancel}}<form class="actions" method="post" action="/builds/{{id}}/cancel"><input type="hidden" name="csrf" value="{{base.csrf}}"><button type="submit" id="cancel-build" class="danger">Cancel build</button></form>{{/canCancel}}
        <h2>Events</h2>
        {{#eventsTruncated}}<p class="muted">Earlier events are left out; the newest {{eventCount}} are shown.</p>{{/eventsTruncated}}
        <ol class="timeline" id="timeline">
        {{#events}}<li><time datetime="{{eventISO}}">{{eventTime}}</time> <span class="etype">{{eventType}}</span>{{#eventPlatform}} <span class="mono">[{{eventPlatform}}]</span>{{/eventPlatform}} {{eventText}}</li>
        {{/events}}
        </ol>
        </div>
        {{/content}}{{/layout}}

        """

    static let log = """
        {{<layout}}{{$title}}Log {{platform}} · build {{shortId}} · Manifold{{/title}}{{$content}}
        <p class="crumbs"><a href="/builds">Builds</a> / <a href="/builds/{{id}}">{{shortId}}</a> /</p>
        <h1>Log of <span class="mono">{{platform}}</span>, attempt {{attempt}}</h1>
        {{#hasAttempts}}<nav class="attempts" aria-label="Attempts">Attempts: {{#attempts}}{{#current}}<strong aria-current="page">{{number}}</strong>{{/current}}{{^current}}<a href="{{link}}">{{number}}</a>{{/current}} {{/attempts}}</nav>{{/hasAttempts}}
        <p class="logbar">{{windowText}} {{#earlierLink}}<a href="{{earlierLink}}" id="load-earlier">Load earlier</a>{{/earlierLink}} {{#latestLink}}<a href="{{latestLink}}">Latest</a>{{/latestLink}} <a href="{{rawLink}}" download>Download raw</a> <span id="follow-status" role="status">{{statusText}}</span></p>
        <pre id="log" class="log" tabindex="0" aria-label="Log output" data-follow="{{followURL}}">{{#segments}}{{#segmentClass}}<span class="{{segmentClass}}">{{segmentText}}</span>{{/segmentClass}}{{^segmentClass}}{{segmentText}}{{/segmentClass}}{{/segments}}</pre>
        {{/content}}{{/layout}}

        """

    static let agents = """
        {{<layout}}{{$title}}Agents · Manifold{{/title}}{{$content}}
        <h1>Agents</h1>
        <div id="agents-live" class="live" data-changes="/live/changes">
        <div class="scroll"><table class="agents">
        <caption class="vh">Agents that have not left</caption>
        <thead><tr><th scope="col">Name</th><th scope="col">Pool</th><th scope="col">Labels</th><th scope="col">Platforms</th><th scope="col">Builders</th><th scope="col">Version</th><th scope="col">State</th><th scope="col">Current job</th><th scope="col">Last seen</th>{{#isAdmin}}<th scope="col">Admin</th>{{/isAdmin}}</tr></thead>
        <tbody>
        {{#agents}}<tr id="agent-{{agentKey}}">
        <th scope="row">{{name}}</th>
        <td>{{pool}}</td>
        <td class="mono">{{labels}}</td>
        <td class="mono">{{#platforms}}{{.}}<br>{{/platforms}}</td>
        <td>{{builders}}</td>
        <td>{{version}}</td>
        <td><span class="state s-{{agentStateClass}}">{{agentState}}</span></td>
        <td>{{#currentBuildLink}}<a href="{{currentBuildLink}}">{{currentJob}}</a>{{/currentBuildLink}}{{^currentBuildLink}}{{currentJob}}{{/currentBuildLink}}</td>
        <td>{{#lastSeenISO}}<time datetime="{{lastSeenISO}}">{{lastSeen}}</time>{{/lastSeenISO}}</td>
        {{#isAdmin}}<td><div class="agent-actions">{{#actions}}<form method="post" action="/agents/{{agentPath}}/state"><input type="hidden" name="csrf" value="{{base.csrf}}"><input type="hidden" name="state" value="{{target}}"><button type="submit" aria-label="{{actionLabel}} {{name}}">{{actionLabel}}</button></form>{{/actions}}</div></td>{{/isAdmin}}
        </tr>
        {{/agents}}
        {{^agents}}<tr><td colspan="10">No agents have joined yet. Join one with <code>manifold-agent join</code> and a join token.</td></tr>{{/agents}}
        </tbody></table></div>
        </div>
        {{/content}}{{/layout}}

        """

    static let error = """
        {{<layout}}{{$title}}{{status}} · Manifold{{/title}}{{$content}}
        <h1>{{heading}}</h1>
        <p class="card">{{message}}</p>
        <p><a href="{{back}}">Back</a></p>
        {{/content}}{{/layout}}

        """

    /// Sent instead of the sign-in redirect to a link followed from another site: SameSite=Strict keeps the session
    /// cookie off that first request, and this page's same-site refresh brings it back.
    static let refresh = """
        <!doctype html>
        <html lang="en">
        <head>
        <meta charset="utf-8">
        <meta http-equiv="refresh" content="0; url={{target}}">
        <title>Manifold</title>
        </head>
        <body>
        <p><a href="{{target}}">Continue to the Manifold dashboard</a></p>
        </body>
        </html>

        """

    /// Every template by name.
    static let all: [String: String] = [
        "layout": layout, "sign-in": signIn, "builds": builds, "build": build, "log": log, "agents": agents, "error": error,
        "refresh": refresh,
    ]

    /// The compiled templates. They are constants of this file, so a parse failure is a programming error that the
    /// dashboard's tests catch by rendering every page.
    static let library: MustacheLibrary = {
        var library = MustacheLibrary()
        for (name, text) in all {
            do {
                try library.register(text, named: name)
            } catch {
                preconditionFailure("dashboard template \(name) does not parse: \(error)")
            }
        }
        return library
    }()

    static func render(_ page: Any, _ name: String) -> String {
        guard let text = library.render(page, withTemplate: name) else {
            preconditionFailure("no dashboard template \(name)")
        }
        return text
    }
}
