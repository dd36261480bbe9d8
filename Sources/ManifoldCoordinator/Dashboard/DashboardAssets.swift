import Crypto
import Foundation

/// The dashboard's stylesheet and script, served from `/static/` with a version in their URLs so browsers may cache
/// them for a year. Written for this dashboard (no third-party code, nothing fetched from a CDN); the script only
/// enhances pages that work without it: live rows, log following and copy buttons.
enum DashboardAssets {
    struct Asset: Sendable {
        var contentType: String
        var body: String
    }

    static let files: [String: Asset] = [
        "dashboard.css": Asset(contentType: "text/css; charset=utf-8", body: css),
        "dashboard.js": Asset(contentType: "text/javascript; charset=utf-8", body: script),
    ]

    /// A short hash of both files, in their URLs (`?v=…`), so a new coordinator's assets are fetched anew.
    static let version: String = {
        let digest = SHA256.hash(data: Data((css + script).utf8))
        return digest.prefix(6).map { String(format: "%02x", $0) }.joined()
    }()

    static let css = """
        :root {
          --bg: #ffffff; --fg: #1b1f24; --muted: #57606a; --line: #d0d7de; --card: #f6f8fa; --link: #0550ae;
          --ok: #116329; --ok-bg: #dafbe1; --bad: #a40e26; --bad-bg: #ffebe9; --run: #0550ae; --run-bg: #ddf4ff;
          --wait: #6e5600; --wait-bg: #fff8c5; --off: #57606a; --off-bg: #eaeef2; --focus: #0969da;
          color-scheme: light dark;
        }
        @media (prefers-color-scheme: dark) {
          :root {
            --bg: #0d1117; --fg: #e6edf3; --muted: #9da7b3; --line: #30363d; --card: #161b22; --link: #79c0ff;
            --ok: #7ee787; --ok-bg: #0f2d1a; --bad: #ffa198; --bad-bg: #3c1618; --run: #79c0ff; --run-bg: #0c2d4f;
            --wait: #e3b341; --wait-bg: #332b00; --off: #9da7b3; --off-bg: #21262d; --focus: #58a6ff;
          }
        }
        * { box-sizing: border-box; }
        html { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; font-size: 15px; line-height: 1.45; }
        body { margin: 0; background: var(--bg); color: var(--fg); }
        a { color: var(--link); }
        :focus-visible { outline: 3px solid var(--focus); outline-offset: 2px; }
        .skip { position: absolute; left: -10000px; top: 0; }
        .skip:focus { left: 8px; top: 8px; background: var(--card); padding: 6px 10px; z-index: 10; }
        .vh { position: absolute; width: 1px; height: 1px; overflow: hidden; clip: rect(0 0 0 0); white-space: nowrap; }
        header.top { display: flex; flex-wrap: wrap; gap: 8px 16px; align-items: center; justify-content: space-between;
          padding: 10px 16px; border-bottom: 1px solid var(--line); background: var(--card); }
        header.top nav a { margin-right: 14px; font-weight: 600; text-decoration: none; }
        header.top .brand { color: var(--fg); }
        .signout { display: flex; gap: 10px; align-items: center; margin: 0; }
        .role { color: var(--muted); font-size: 0.9em; }
        main { padding: 16px; max-width: 1400px; margin: 0 auto; }
        h1 { font-size: 1.5rem; margin: 0.2em 0 0.6em; overflow-wrap: anywhere; }
        h2 { font-size: 1.15rem; margin: 1.4em 0 0.5em; }
        .mono, code, pre, input.mono { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; font-size: 0.92em; }
        .muted { color: var(--muted); }
        .card { background: var(--card); border: 1px solid var(--line); border-radius: 8px; padding: 14px 16px; }
        .flash { background: var(--bad-bg); color: var(--bad); border: 1px solid var(--bad); border-radius: 6px; padding: 8px 12px; }
        .signin { max-width: 520px; display: grid; gap: 8px; }
        input[type=text], input[type=password], select { font: inherit; color: var(--fg); background: var(--bg);
          border: 1px solid var(--line); border-radius: 6px; padding: 6px 8px; min-height: 36px; }
        button { font: inherit; color: var(--fg); background: var(--card); border: 1px solid var(--line); border-radius: 6px;
          padding: 6px 12px; min-height: 36px; cursor: pointer; }
        button:hover { border-color: var(--focus); }
        button.danger { color: var(--bad); border-color: var(--bad); }
        .filters { display: flex; flex-wrap: wrap; gap: 10px; align-items: end; margin-bottom: 12px; }
        .filters label { display: grid; gap: 2px; font-size: 0.9em; color: var(--muted); }
        .scroll { overflow-x: auto; border: 1px solid var(--line); border-radius: 8px; }
        table { border-collapse: collapse; width: 100%; }
        th, td { text-align: left; vertical-align: top; padding: 7px 10px; border-bottom: 1px solid var(--line); }
        thead th { background: var(--card); font-size: 0.85em; color: var(--muted); white-space: nowrap; }
        tbody tr:last-child > * { border-bottom: 0; }
        td.time, td.nowrap, table.platforms th[scope=row] { white-space: nowrap; }
        td.tag { overflow-wrap: anywhere; min-width: 10em; }
        abbr[title] { text-decoration: none; border-bottom: 1px dotted var(--muted); cursor: help; }
        .state, .chip { display: inline-block; border-radius: 999px; padding: 1px 9px; font-size: 0.85em; font-weight: 600;
          border: 1px solid currentColor; white-space: nowrap; }
        .chip { margin: 1px 2px 1px 0; font-weight: 500; }
        .s-ok { color: var(--ok); background: var(--ok-bg); }
        .s-bad { color: var(--bad); background: var(--bad-bg); }
        .s-run { color: var(--run); background: var(--run-bg); }
        .s-wait { color: var(--wait); background: var(--wait-bg); }
        .s-off { color: var(--off); background: var(--off-bg); }
        .reason { color: var(--bad); font-size: 0.9em; }
        dl.summary { display: grid; grid-template-columns: max-content 1fr; gap: 4px 16px; margin: 0 0 12px; }
        dl.summary dt { color: var(--muted); }
        dl.summary dd { margin: 0; overflow-wrap: anywhere; }
        .pull { margin: 6px 0; display: grid; gap: 2px; }
        .pull label { font-size: 0.9em; color: var(--muted); }
        .copyline { display: flex; gap: 6px; }
        .copyline input { flex: 1; min-width: 0; }
        .actions { margin-top: 12px; }
        .agent-actions { display: flex; gap: 6px; flex-wrap: wrap; }
        .agent-actions form { margin: 0; }
        .timeline { padding-left: 1.2em; font-size: 0.92em; }
        .timeline li { margin: 2px 0; overflow-wrap: anywhere; }
        .etype { font-weight: 600; }
        .paging { margin-top: 12px; display: flex; gap: 16px; }
        .crumbs { margin: 0; color: var(--muted); }
        .logbar { display: flex; flex-wrap: wrap; gap: 6px 16px; align-items: center; }
        .ansi-b { font-weight: 700; }
        .ansi-fg0 { color: #1b1f24; } .ansi-fg1 { color: #b3261e; } .ansi-fg2 { color: #116329; } .ansi-fg3 { color: #7a5c00; }
        .ansi-fg4 { color: #0550ae; } .ansi-fg5 { color: #8250df; } .ansi-fg6 { color: #1b7c83; } .ansi-fg7 { color: #57606a; }
        .ansi-fg8 { color: #6e7781; } .ansi-fg9 { color: #cf222e; } .ansi-fg10 { color: #1a7f37; } .ansi-fg11 { color: #9a6700; }
        .ansi-fg12 { color: #0969da; } .ansi-fg13 { color: #a475f9; } .ansi-fg14 { color: #3192aa; } .ansi-fg15 { color: #1b1f24; }
        @media (prefers-color-scheme: dark) {
          .ansi-fg0 { color: #8b949e; } .ansi-fg1 { color: #ff7b72; } .ansi-fg2 { color: #7ee787; } .ansi-fg3 { color: #e3b341; }
          .ansi-fg4 { color: #79c0ff; } .ansi-fg5 { color: #d2a8ff; } .ansi-fg6 { color: #76e3ea; } .ansi-fg7 { color: #e6edf3; }
          .ansi-fg8 { color: #8b949e; } .ansi-fg9 { color: #ffa198; } .ansi-fg10 { color: #aff5b4; } .ansi-fg11 { color: #f8e3a1; }
          .ansi-fg12 { color: #a5d6ff; } .ansi-fg13 { color: #e2c5ff; } .ansi-fg14 { color: #b3f0ff; } .ansi-fg15 { color: #ffffff; }
        }
        pre.log { background: var(--card); border: 1px solid var(--line); border-radius: 8px; padding: 12px;
          overflow: auto; max-height: 75vh; white-space: pre-wrap; overflow-wrap: anywhere; margin: 0; }
        @media (max-width: 700px) {
          main { padding: 10px; }
          th, td { padding: 6px; }
          dl.summary { grid-template-columns: 1fr; }
          dl.summary dd { margin-bottom: 6px; }
        }

        """

    static let script = #"""
        // Manifold dashboard: live updates for pages the server renders in full. Written for this dashboard.
        (function () {
          "use strict";

          // Replaces the elements with these ids by their copies in a fresh rendering of the page, keeping the
          // keyboard focus on the element with the same id.
          function swap(html, ids) {
            var doc = new DOMParser().parseFromString(html, "text/html");
            var focused = document.activeElement && document.activeElement.id;
            ids.forEach(function (id) {
              var fresh = doc.getElementById(id), old = document.getElementById(id);
              if (fresh && old) { old.replaceWith(document.importNode(fresh, true)); }
            });
            if (focused) {
              var again = document.getElementById(focused);
              if (again) { again.focus(); }
            }
            enhance(document);
          }

          var pending = null, running = false;
          // Fetches the page again at most once a second and swaps the live parts.
          function refresh(ids, done) {
            if (pending) { return; }
            pending = setTimeout(function () {
              pending = null;
              if (running) { refresh(ids, done); return; }
              running = true;
              fetch(location.href, { credentials: "same-origin", cache: "no-store", headers: { "Accept": "text/html" } })
                .then(function (response) {
                  if (response.redirected || !response.ok) { return null; }
                  return response.text();
                })
                .then(function (html) { if (html) { swap(html, ids); } if (done) { done(); } })
                .catch(function () {})
                .then(function () { running = false; });
            }, 400);
          }

          // `job.log` (a log line, at most once a second per attempt) changes nothing the page shows: not listened to.
          var eventTypes = ["build.submitted", "build.failed", "build.cancelled", "job.assigned", "job.phase",
            "job.verifying", "job.succeeded", "job.retrying", "job.failed", "job.lost", "job.queued", "job.released",
            "job.cancelled", "list.publishing", "list.published", "list.retrying", "message"];

          function followBuild(live) {
            var url = live.getAttribute("data-events");
            if (!url || live.getAttribute("data-final") === "true" || !window.EventSource) { return; }
            var source = new EventSource(url);
            var onEvent = function () {
              refresh(["build-live"], function () {
                var now = document.getElementById("build-live");
                if (now && now.getAttribute("data-final") === "true") { source.close(); }
              });
            };
            eventTypes.forEach(function (type) { source.addEventListener(type, onEvent); });
          }

          function followChanges(live) {
            var url = live.getAttribute("data-changes");
            if (!url || !window.EventSource) { return; }
            var source = new EventSource(url);
            source.addEventListener("change", function () { refresh([live.id]); });
          }

          // Log text: the 16 basic SGR colours and bold become spans with classes (as the server renders them); every
          // other escape sequence (cursor moves, titles, 256 colours) and control character is dropped. Text is only
          // ever inserted as text nodes.
          var escapes = /\u001b\[([0-?]*)[ -\/]*([@-~])|\u001b\][^\u0007\u001b]*(?:\u0007|\u001b\\)|\u001b[@-Z\\-_]/g;
          var controls = /[\u0000-\u0008\u000b-\u001f\u007f-\u009f]/g;
          var sgr = { colour: null, bold: false };
          var maxChars = 4000000;

          function applySGR(parameters) {
            var codes = parameters === "" ? [0] : parameters.split(";").map(function (p) { return parseInt(p, 10) || 0; });
            for (var i = 0; i < codes.length; i++) {
              var code = codes[i];
              if (code === 0) { sgr.colour = null; sgr.bold = false; }
              else if (code === 1) { sgr.bold = true; }
              else if (code === 22) { sgr.bold = false; }
              else if (code >= 30 && code <= 37) { sgr.colour = code - 30; }
              else if (code >= 90 && code <= 97) { sgr.colour = code - 90 + 8; }
              else if (code === 39) { sgr.colour = null; }
              else if ((code === 38 || code === 48) && i + 1 < codes.length) {
                i += codes[i + 1] === 5 ? 2 : (codes[i + 1] === 2 ? 4 : 1);
              }
            }
          }

          function emit(pre, text) {
            text = text.replace(controls, "");
            if (!text) { return; }
            var classes = [];
            if (sgr.colour !== null) { classes.push("ansi-fg" + sgr.colour); }
            if (sgr.bold) { classes.push("ansi-b"); }
            if (classes.length) {
              var span = document.createElement("span");
              span.className = classes.join(" ");
              span.textContent = text;
              pre.appendChild(span);
            } else {
              pre.appendChild(document.createTextNode(text));
            }
          }

          function appendLog(pre, text) {
            var last = 0, match;
            escapes.lastIndex = 0;
            while ((match = escapes.exec(text)) !== null) {
              emit(pre, text.slice(last, match.index));
              if (match[2] === "m") { applySGR(match[1]); }
              last = escapes.lastIndex;
            }
            emit(pre, text.slice(last));
          }

          function followLog(pre) {
            var url = pre.getAttribute("data-follow");
            var status = document.getElementById("follow-status");
            if (!url || !window.fetch || !window.TextDecoder || !window.ReadableStream) { return; }
            if (status) { status.textContent = "Following live…"; }
            fetch(url, { credentials: "same-origin", cache: "no-store" }).then(function (response) {
              if (!response.ok || !response.body) { throw new Error("HTTP " + response.status); }
              var reader = response.body.getReader(), decoder = new TextDecoder("utf-8"), carry = "";
              function pump() {
                return reader.read().then(function (step) {
                  if (step.done) {
                    if (status) { status.textContent = "The attempt has finished."; }
                    return;
                  }
                  var text = carry + decoder.decode(step.value, { stream: true });
                  var partial = text.match(/\u001b[^A-Za-z\u0007]*$/);
                  if (partial) { carry = partial[0]; text = text.slice(0, partial.index); } else { carry = ""; }
                  var atBottom = pre.scrollHeight - pre.scrollTop - pre.clientHeight < 40;
                  appendLog(pre, text);
                  while (pre.textContent.length > maxChars && pre.firstChild) { pre.removeChild(pre.firstChild); }
                  if (atBottom) { pre.scrollTop = pre.scrollHeight; }
                  return pump();
                });
              }
              return pump();
            }).catch(function () {
              if (status) { status.textContent = "Live following stopped; reload to see more."; }
            });
          }

          function enhance(root) {
            root.querySelectorAll("button[data-copy]").forEach(function (button) {
              if (!navigator.clipboard || button.getAttribute("data-ready")) { return; }
              button.setAttribute("data-ready", "1");
              button.hidden = false;
              button.addEventListener("click", function () {
                var input = document.getElementById(button.getAttribute("data-copy"));
                if (!input) { return; }
                navigator.clipboard.writeText(input.value).then(function () { button.textContent = "Copied"; });
              });
            });
          }

          document.addEventListener("DOMContentLoaded", function () {
            enhance(document);
            var build = document.getElementById("build-live");
            if (build) { followBuild(build); }
            ["builds-live", "agents-live"].forEach(function (id) {
              var live = document.getElementById(id);
              if (live) { followChanges(live); }
            });
            var pre = document.getElementById("log");
            if (pre) {
              pre.scrollTop = pre.scrollHeight;
              followLog(pre);
            }
          });
        })();

        """#
}
