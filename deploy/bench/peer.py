#!/usr/bin/env python3
"""Manifold against Buildbot, alternating run by run in one process (driven by deploy/bench/buildbot-peer.sh).

Both sides run a three-"platform" build on three local build hosts with a trivial step:
  Manifold  `manifold build submit --watch` (a fresh CLI process) / the REST API, three manifold-agent processes, an
            instant builder (one manifest PUT), and what Manifold does besides: verifying every digest in a real
            registry and publishing the manifest list.
  Buildbot  a force scheduler over REST, three buildbot-worker processes, a step that notes its start time.
Measures, each as a median over the runs, and the ratio Buildbot / Manifold (above 1: Manifold is faster):
  end to end  submit until the build is finished (Manifold: list published), seen by the submitting client
  dispatch    the submit request until the last of the three build steps started on its host
  throughput  BUILDS builds submitted at once until all are finished: builds and step completions per second
"""

import argparse
import http.client
import json
import os
import ssl
import statistics
import subprocess
import time
import urllib.parse


def read_lines(path):
    try:
        with open(path) as file:
            return [line.split() for line in file if line.strip()]
    except FileNotFoundError:
        return []


class Connection:
    """One kept-alive HTTP(S) connection to a side's API, as a client polling it would keep, so that neither side's
    figures include a TCP (and TLS) handshake per status request. A GET whose kept connection was closed meanwhile is
    sent again on a new one; a POST goes on a connection of its own (sent twice, it would start two builds)."""

    def __init__(self, url, context=None, headers=None):
        parts = urllib.parse.urlsplit(url)
        self.host, self.port, self.base = parts.hostname, parts.port, parts.path.rstrip("/")
        self.context, self.headers = context, dict(headers or {})
        self.kept = None

    def open(self):
        if self.context is not None:
            return http.client.HTTPSConnection(self.host, self.port, context=self.context, timeout=60)
        return http.client.HTTPConnection(self.host, self.port, timeout=60)

    def send(self, connection, method, path, body):
        data = None if body is None else json.dumps(body).encode()
        connection.request(method, self.base + path, body=data, headers={**self.headers, "Content-Type": "application/json"})
        answer = connection.getresponse()
        payload = answer.read()
        if answer.status >= 300:
            raise SystemExit(f"{method} {path} answered HTTP {answer.status}: {payload[:500]!r}")
        return json.loads(payload)

    def call(self, method, path, body=None):
        if method != "GET":
            connection = self.open()
            try:
                return self.send(connection, method, path, body)
            finally:
                connection.close()
        for attempt in range(2):
            if self.kept is None:
                self.kept = self.open()
            try:
                return self.send(self.kept, method, path, body)
            except (http.client.HTTPException, OSError):
                self.kept.close()
                self.kept = None
                if attempt == 1:
                    raise


def wait_for(condition, timeout, what):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if condition():
            return
        time.sleep(0.002)
    raise SystemExit(f"gave up after {timeout} s waiting for {what}")


class Manifold:
    def __init__(self, args):
        self.args = args
        with open(args.manifold_token_file) as file:
            token = file.read().strip()
        self.api = Connection(args.manifold_url, context=ssl.create_default_context(cafile=args.manifold_ca),
                              headers={"Authorization": f"Bearer {token}"})
        self.platforms = args.platforms.split(",")
        self.starts = os.path.join(args.work, "builder-times")
        self.sequence = 0

    def call(self, method, path, body=None):
        return self.api.call(method, path, body)

    def spec(self, digest):
        self.sequence += 1
        platforms = []
        for text in self.platforms:
            os_name, rest = text.split("/", 1)
            architecture, _, version = rest.partition(":")
            platform = {"os": os_name, "architecture": architecture}
            if version:
                platform["os.version"] = version
            platforms.append({"platform": platform})
        return {"image": f"{self.args.image}", "tags": [f"p{self.sequence}"], "platforms": platforms,
                "context": {"type": "upload", "digest": digest}}

    def end_to_end(self):
        flags = []
        for platform in self.platforms:
            flags += ["--platform", platform]
        self.sequence += 1
        started = time.time()
        subprocess.run([self.args.manifold, "build", "submit", self.args.image, "--tag", f"e{self.sequence}", *flags,
                        "--context", self.args.context, "--watch", "--quiet"], check=True, stdout=subprocess.DEVNULL)
        return time.time() - started

    def context_digest(self):
        # The CLI uploaded the context in the first end-to-end run; the coordinator lists what it holds.
        output = subprocess.run(["sqlite3", f"file:{self.args.manifold_db}?mode=ro",
                                 "SELECT digest FROM context ORDER BY createdAt DESC LIMIT 1"],
                                check=True, capture_output=True, text=True).stdout.strip()
        if not output.startswith("sha256:"):
            raise SystemExit(f"no uploaded context found in {self.args.manifold_db}: {output!r}")
        return output

    def finished(self, build_id):
        state = self.call("GET", f"/api/v1/builds/{build_id}")["state"]
        if state in ("failed", "cancelled"):
            raise SystemExit(f"Manifold build {build_id} ended {state}")
        return state == "published"

    def dispatch(self, digest):
        open(self.starts, "w").close()
        started = time.time()
        build = self.call("POST", "/api/v1/builds", self.spec(digest))
        wait_for(lambda: len(read_lines(self.starts)) >= len(self.platforms), 60, "Manifold's builders to start")
        latest = max(float(fields[1]) for fields in read_lines(self.starts))
        wait_for(lambda: self.finished(build["id"]), 120, f"Manifold build {build['id']}")
        return latest - started

    def throughput(self, digest, builds):
        started = time.time()
        pending = [self.call("POST", "/api/v1/builds", self.spec(digest))["id"] for _ in range(builds)]
        while pending:
            pending = [build for build in pending if not self.finished(build)]
            time.sleep(0.01)
        return time.time() - started


class Buildbot:
    def __init__(self, args):
        self.api = Connection(f"http://127.0.0.1:{args.buildbot_port}/api/v2")
        self.starts = args.buildbot_starts
        self.builders = len(args.platforms.split(","))

    def call(self, method, path, body=None):
        return self.api.call(method, path, body)

    def force(self):
        answer = self.call("POST", "/forceschedulers/force",
                           {"id": 1, "jsonrpc": "2.0", "method": "force", "params": {"reason": "bench"}})
        if "error" in answer:
            raise SystemExit(f"Buildbot refused the force: {answer['error']}")
        return answer["result"][0]

    def finished(self, buildset):
        sets = self.call("GET", f"/buildsets/{buildset}")["buildsets"]
        return bool(sets) and sets[0]["complete"]

    def end_to_end(self):
        started = time.time()
        buildset = self.force()
        wait_for(lambda: self.finished(buildset), 120, f"Buildbot buildset {buildset}")
        return time.time() - started

    def dispatch(self):
        open(self.starts, "w").close()
        started = time.time()
        buildset = self.force()
        wait_for(lambda: len(read_lines(self.starts)) >= self.builders, 60, "Buildbot's steps to start")
        latest = max(float(fields[1]) for fields in read_lines(self.starts))
        wait_for(lambda: self.finished(buildset), 120, f"Buildbot buildset {buildset}")
        return latest - started

    def throughput(self, builds):
        started = time.time()
        pending = [self.force() for _ in range(builds)]
        while pending:
            pending = [buildset for buildset in pending if not self.finished(buildset)]
            time.sleep(0.01)
        return time.time() - started


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    for name in ["work", "manifold", "manifold-url", "manifold-ca", "manifold-token-file", "manifold-db", "image",
                 "context", "platforms", "buildbot-port", "buildbot-starts"]:
        parser.add_argument(f"--{name}", required=True)
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--builds", type=int, default=20)
    args = parser.parse_args()
    manifold, buildbot = Manifold(args), Buildbot(args)

    # Warm-up, not counted: the context upload, TLS sessions, Buildbot's first builds.
    manifold.end_to_end()
    buildbot.end_to_end()
    digest = manifold.context_digest()

    figures = {}
    def record(name, side, value):
        figures.setdefault(name, {"manifold": [], "buildbot": []})[side].append(value)

    for _ in range(args.runs):
        record("end to end (s)", "manifold", manifold.end_to_end())
        record("end to end (s)", "buildbot", buildbot.end_to_end())
        record("dispatch (s)", "manifold", manifold.dispatch(digest))
        record("dispatch (s)", "buildbot", buildbot.dispatch())
    builders = len(args.platforms.split(","))
    for _ in range(2):
        elapsed = manifold.throughput(digest, args.builds)
        record("throughput, builds (/s)", "manifold", args.builds / elapsed)
        record("throughput, step completions (/s)", "manifold", args.builds * builders / elapsed)
        elapsed = buildbot.throughput(args.builds)
        record("throughput, builds (/s)", "buildbot", args.builds / elapsed)
        record("throughput, step completions (/s)", "buildbot", args.builds * builders / elapsed)

    print(f"{args.runs} runs each, alternating; medians; ratio Buildbot/Manifold (above 1: Manifold is faster)")
    for name, sides in figures.items():
        ours, theirs = statistics.median(sides["manifold"]), statistics.median(sides["buildbot"])
        higher_is_better = "/s" in name
        ratio = ours / theirs if higher_is_better else theirs / ours
        scale = 1 if higher_is_better else 1000
        unit = "/s" if higher_is_better else "ms"
        label = name.split(" (")[0]
        print(f"  {label:30} Manifold {ours * scale:9.1f} {unit:3} Buildbot {theirs * scale:9.1f} {unit:3} ratio {ratio:6.2f}")


if __name__ == "__main__":
    main()
