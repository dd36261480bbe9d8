#!/usr/bin/env python3
"""A registry that tries to misuse its clients, for the registry client's SSRF tests. Standard library only.

    hostile_registry.py --port P [--host 127.0.0.1] [--tls-cert C --tls-key K] --mode MODE [--target URL]
        [--body-bytes N] [--parent-pid PID]

Modes (every path answers the same way):
  realm        401 with WWW-Authenticate: Bearer realm="TARGET",service="hostile" (no Authorization needed)
  redirect     GET/HEAD: 302 to TARGET (relative paths appended); other methods 404
  location     Basic authentication required (401 Basic without it); then POST .../blobs/uploads/ answers
               202 with Location: TARGET, GET .../tags/list answers 200 with Link: <TARGET>; rel="next"
  error-page   500 with an HTML page of --body-bytes bytes holding the marker INTERNAL-SECRET-PAGE
  sink         200 "{}" to everything (a host a hostile registry points its clients at)

Each request is logged to stdout as one JSON line: method, path, host, and whether an Authorization header
came with it (never its value).
"""

import argparse
import http.server
import json
import os
import ssl
import sys
import threading
import time


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "HostileRegistry/1.0"

    def log_message(self, format, *args):
        pass

    def handle_any(self):
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        print(json.dumps({
            "method": self.command, "path": self.path, "host": self.headers.get("Host"),
            "authorization": self.headers.get("Authorization") is not None,
        }), flush=True)
        mode, target = self.server.mode, self.server.target
        if mode == "realm":
            self.answer(401, b'{"errors":[{"code":"UNAUTHORIZED","message":"token needed"}]}',
                        [("WWW-Authenticate", f'Bearer realm="{target}",service="hostile"')])
        elif mode == "redirect":
            if self.command in ("GET", "HEAD"):
                self.answer(302, b"", [("Location", target + self.path)])
            else:
                self.answer(404, b'{"errors":[{"code":"UNSUPPORTED"}]}')
        elif mode == "location":
            if self.headers.get("Authorization") is None:
                self.answer(401, b'{"errors":[{"code":"UNAUTHORIZED"}]}', [("WWW-Authenticate", 'Basic realm="hostile"')])
            elif self.command == "POST" and "/blobs/uploads/" in self.path:
                self.answer(202, b"", [("Location", target), ("Docker-Upload-UUID", "hostile")])
            elif self.path.split("?")[0].endswith("/tags/list"):
                self.answer(200, b'{"name":"x","tags":["a"]}', [("Link", f'<{target}>; rel="next"')])
            else:
                self.answer(200, b"{}")
        elif mode == "error-page":
            head, tail = b"<html><body>INTERNAL-SECRET-PAGE ", b"</body></html>"
            page = head + b"x" * max(0, self.server.body_bytes - len(head) - len(tail)) + tail
            self.answer(500, page, [("Content-Type", "text/html")])
        else:
            self.answer(200, b'{"name":"x","tags":[]}', [("Content-Type", "application/json")])

    def answer(self, status, body, headers=()):
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        if not any(name == "Content-Type" for name, _ in headers):
            self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = handle_any


def watch_parent(pid):
    while True:
        try:
            os.kill(pid, 0)
        except OSError:
            os._exit(0)
        time.sleep(1)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--mode", required=True, choices=["realm", "redirect", "location", "error-page", "sink"])
    parser.add_argument("--target", default="")
    parser.add_argument("--body-bytes", type=int, default=200_000)
    parser.add_argument("--tls-cert")
    parser.add_argument("--tls-key")
    parser.add_argument("--parent-pid", type=int)
    args = parser.parse_args()
    if not args.host.startswith("127.") and args.host not in ("::1", "localhost"):
        parser.error("the hostile registry listens on loopback only")
    server = http.server.ThreadingHTTPServer((args.host, args.port), Handler)
    server.daemon_threads = True
    server.mode, server.target, server.body_bytes = args.mode, args.target, args.body_bytes
    if args.tls_cert:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(args.tls_cert, args.tls_key)
        server.socket = context.wrap_socket(server.socket, server_side=True)
    if args.parent_pid:
        threading.Thread(target=watch_parent, args=(args.parent_pid,), daemon=True).start()
    print(json.dumps({"listening": f"{args.host}:{args.port}", "mode": args.mode}), flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
