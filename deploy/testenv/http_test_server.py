#!/usr/bin/env python3
"""An HTTP(S) server for ManifoldHTTP's tests. Python 3 standard library only; loopback only.

    http_test_server.py --port 8080 [--host 127.0.0.1] [--tls-cert server.crt --tls-key server.key]
        [--client-ca ca.crt] [--http-version 1.1|1.0] [--parent-pid PID]

Endpoints (any method unless noted):
  /echo                JSON: method, path, query, headers [[name, value]...], bodyLength, sha256,
                       proxied (true when the request line carried an absolute URL, i.e. via a proxy)
  /upload              JSON: method, bodyLength, sha256 of the request body
  /status/N            answers status N with a short text body
  /slow?delay=S[&tag=T]
                       sleeps S seconds, then answers 200 "slow"; with a tag, counted in /held meanwhile
  /held?tag=T          JSON {"held": N}: how many /slow requests tagged T are sleeping now
  /drip?chunks=N&interval=S&size=B
                       N chunks of B bytes (chunked encoding), S seconds apart
  /redirect?to=URL&code=N
                       answers N (default 302) with Location: URL (relative URLs stay relative)
  /loop                302 to /loop, forever
  /big?bytes=N         N bytes of a repeating pattern with Content-Length and X-Sha256
  /headers             multi-valued response headers (X-Multi: a, X-Multi: b, two Set-Cookie)
  /v1/traces           an OTLP/HTTP collector: POST keeps the export and answers an empty response in
                       its encoding (415 unless Content-Type is application/json or application/x-protobuf);
                       GET answers the JSON exports, GET /v1/traces/protobuf the binary ones (base64 strings)

--client-ca makes the TLS server require a client certificate signed by that CA. --parent-pid makes
the server exit when that process is gone, so a crashed test run leaves nothing behind. Request
lines are logged to stdout; header values are not.
"""

import argparse
import base64
import hashlib
import http.server
import json
import os
import ssl
import sys
import threading
import time
import urllib.parse

PATTERN = bytes(range(256)) * 256  # 64 KiB

# The OTLP exports /v1/traces received, in order.
TRACES = []
TRACES_PROTOBUF = []
TRACES_LOCK = threading.Lock()

# How many /slow requests of each tag are sleeping now.
HELD = {}
HELD_LOCK = threading.Lock()


def pattern_bytes(count):
    full, rest = divmod(count, len(PATTERN))
    return PATTERN * full + PATTERN[:rest]


class Handler(http.server.BaseHTTPRequestHandler):
    server_version = "ManifoldHTTPTest/1.0"

    def log_message(self, format, *args):
        sys.stdout.write("%s %s\n" % (self.address_string(), format % args))
        sys.stdout.flush()

    def read_body(self):
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            data = bytearray()
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return bytes(data)
                data += self.rfile.read(size)
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def send(self, status, body=b"", content_type="text/plain", headers=()):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in headers:
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def send_json(self, value, status=200):
        self.send(status, json.dumps(value).encode(), "application/json")

    def handle_any(self):
        proxied = self.path.startswith("http://") or self.path.startswith("https://")
        target = urllib.parse.urlsplit(self.path)
        path, query = target.path, target.query
        params = urllib.parse.parse_qs(query)

        def param(name, default):
            return params.get(name, [default])[0]

        body = self.read_body()
        try:
            if path in ("/echo", "/upload"):
                result = {
                    "method": self.command,
                    "path": path,
                    "query": query,
                    "bodyLength": len(body),
                    "sha256": hashlib.sha256(body).hexdigest(),
                    "proxied": proxied,
                }
                if path == "/echo":
                    result["headers"] = [[name, value] for name, value in self.headers.items()]
                self.send_json(result)
            elif path == "/v1/traces" and self.command == "POST":
                content_type = self.headers.get("Content-Type", "")
                if content_type.startswith("application/json"):
                    export = json.loads(body)
                    with TRACES_LOCK:
                        TRACES.append(export)
                    self.send_json({})
                elif content_type.startswith("application/x-protobuf"):
                    with TRACES_LOCK:
                        TRACES_PROTOBUF.append(base64.b64encode(body).decode())
                    # An empty ExportTraceServiceResponse is zero bytes.
                    self.send(200, b"", "application/x-protobuf")
                else:
                    self.send(415, b"send OTLP as application/json or application/x-protobuf\n")
            elif path == "/v1/traces":
                with TRACES_LOCK:
                    self.send_json(list(TRACES))
            elif path == "/v1/traces/protobuf":
                with TRACES_LOCK:
                    self.send_json(list(TRACES_PROTOBUF))
            elif path.startswith("/status/"):
                status = int(path[len("/status/"):])
                self.send(status, ("status %d\n" % status).encode())
            elif path == "/slow":
                tag = param("tag", None)
                if tag:
                    with HELD_LOCK:
                        HELD[tag] = HELD.get(tag, 0) + 1
                try:
                    time.sleep(float(param("delay", "5")))
                finally:
                    if tag:
                        with HELD_LOCK:
                            HELD[tag] -= 1
                self.send(200, b"slow")
            elif path == "/held":
                with HELD_LOCK:
                    self.send_json({"held": HELD.get(param("tag", ""), 0)})
            elif path == "/drip":
                chunks, interval, size = int(param("chunks", "5")), float(param("interval", "0.2")), int(param("size", "16"))
                self.send_response(200)
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                for index in range(chunks):
                    chunk = bytes([65 + index % 26]) * size
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                    self.wfile.flush()
                    if index + 1 < chunks:
                        time.sleep(interval)
                self.wfile.write(b"0\r\n\r\n")
            elif path == "/redirect":
                code = int(param("code", "302"))
                self.send(code, b"redirecting\n", headers=[("Location", param("to", "/echo"))])
            elif path == "/loop":
                self.send(302, b"again\n", headers=[("Location", "/loop")])
            elif path == "/big":
                data = pattern_bytes(int(param("bytes", "1048576")))
                self.send(200, data, "application/octet-stream", [("X-Sha256", hashlib.sha256(data).hexdigest())])
            elif path == "/headers":
                self.send(200, b"headers\n", headers=[
                    ("X-Multi", "a"), ("X-Multi", "b"), ("Set-Cookie", "one=1"), ("Set-Cookie", "two=2")])
            else:
                self.send(404, b"not found\n")
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError):
            self.close_connection = True

    do_GET = do_HEAD = do_PUT = do_POST = do_PATCH = do_DELETE = do_OPTIONS = handle_any


def watch_parent(pid):
    while True:
        try:
            os.kill(pid, 0)
        except OSError:
            os._exit(0)
        time.sleep(0.5)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--tls-cert")
    parser.add_argument("--tls-key")
    parser.add_argument("--client-ca")
    parser.add_argument("--http-version", default="1.1", choices=["1.0", "1.1"])
    parser.add_argument("--parent-pid", type=int)
    args = parser.parse_args()
    if args.host not in ("127.0.0.1", "::1", "localhost"):
        sys.exit("refusing to listen on %s: tests stay on loopback" % args.host)

    Handler.protocol_version = "HTTP/" + args.http_version

    class Server(http.server.ThreadingHTTPServer):
        daemon_threads = True
        allow_reuse_address = True
        request_queue_size = 128
        address_family = __import__("socket").AF_INET6 if ":" in args.host else __import__("socket").AF_INET

        def handle_error(self, request, client_address):
            pass  # a client that hung up (a cancelled or timed-out test request) is expected

    server = Server((args.host, args.port), Handler)
    if args.tls_cert:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(args.tls_cert, args.tls_key)
        context.set_alpn_protocols(["http/1.1"])
        if args.client_ca:
            context.verify_mode = ssl.CERT_REQUIRED
            context.load_verify_locations(args.client_ca)
        # The handshake then runs in the handler thread, so one stalled client cannot block accept().
        server.socket = context.wrap_socket(server.socket, server_side=True, do_handshake_on_connect=False)
    if args.parent_pid:
        threading.Thread(target=watch_parent, args=(args.parent_pid,), daemon=True).start()
    print("listening on %s:%d (%s)" % (args.host, args.port, "https" if args.tls_cert else "http"), flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
