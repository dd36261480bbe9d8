#!/usr/bin/env python3
"""A fault-injecting HTTP reverse proxy for tests, on loopback in front of a plain-HTTP registry.

    fault_proxy.py --port 5002 --backend http://127.0.0.1:5000 --rules rules.json

Everything is forwarded with bodies streamed both ways; `Location` headers that point at the
backend are rewritten to the proxy's own address (the Host header is passed through unchanged, so
the registry already builds its upload URLs with the proxy's address).

The rules file is a JSON list, re-read on every request (a missing or empty file means no
faults). The first rule that matches a request applies:

    [{"method": "PUT", "pathRegex": "/manifests/", "status": 500, "times": 1, "retryAfter": "1"}]

- method: HTTP method, omitted or "*" for any.
- pathRegex: Python regex searched in the path including its query string (omitted = any).
- status: answer with this status instead of forwarding. Without status (and without reset) the
  request is forwarded after the delay.
- times: how many matching requests the rule applies to; -1 = forever (default 1). The counts
  start over whenever the rules file is rewritten.
- retryAfter: value of a Retry-After header on the fault response.
- delay: seconds to sleep before faulting or forwarding.
- reset: true closes the client connection without any response (a connection reset).
- body: the fault response body (default: a registry-style JSON error).
- headers: extra response headers for the fault response.
- absentHeader: the rule applies only to requests without this header, e.g. "Authorization" to
  answer unauthenticated requests with a 401 challenge and forward the others.
- locationBase: for a request the rule forwards, a `Location` in the answer is moved to this
  scheme://host:port instead of the proxy's own (a registry handing out an upload location on
  another host).

Each request is logged to stdout as one JSON line: {"method", "path", "status", "injected",
"authorization"} (status 0 for a reset; authorization says whether the request carried an
Authorization header, never its value). Python 3 standard library only.
"""

import argparse
import http.client
import http.server
import json
import os
import re
import socket
import sys
import threading
import time
import urllib.parse

HOP_BY_HOP = {
    "connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer",
    "trailers", "transfer-encoding", "upgrade", "proxy-connection",
}
CHUNK = 64 * 1024


class ClientGone(ConnectionError):
    """The client closed its connection in the middle of a request body."""


class Rules:
    """The rules file plus how often each rule has fired since the file last changed."""

    def __init__(self, path):
        self.path = path
        self.lock = threading.Lock()
        self.signature = None
        self.rules = []
        self.used = []

    def match(self, method, path, headers=None):
        with self.lock:
            self._reload()
            for index, rule in enumerate(self.rules):
                wanted = rule.get("method", "*")
                if wanted not in ("*", None) and wanted.upper() != method:
                    continue
                if rule.get("pathRegex") and not re.search(rule["pathRegex"], path):
                    continue
                absent = rule.get("absentHeader")
                if absent and headers is not None and headers.get(absent) is not None:
                    continue
                times = rule.get("times", 1)
                if times >= 0 and self.used[index] >= times:
                    continue
                self.used[index] += 1
                return rule
        return None

    def _reload(self):
        try:
            stat = os.stat(self.path)
            with open(self.path, "rb") as f:
                raw = f.read()
        except FileNotFoundError:
            stat, raw = None, b""
        signature = (stat.st_ino, stat.st_mtime_ns, raw) if stat else None
        if signature == self.signature:
            return
        self.signature = signature
        try:
            rules = json.loads(raw) if raw.strip() else []
        except json.JSONDecodeError as error:
            print(json.dumps({"rulesError": str(error)}), flush=True)
            rules = []
        self.rules = rules if isinstance(rules, list) else []
        self.used = [0] * len(self.rules)


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address, backend, rules):
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, Handler)
        self.backend = urllib.parse.urlsplit(backend)
        self.backend_base = f"{self.backend.scheme}://{self.backend.netloc}"
        self.rules = rules
        self.log_lock = threading.Lock()

    def log(self, **fields):
        with self.log_lock:
            print(json.dumps(fields), flush=True)


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "manifold-fault-proxy"

    def log_message(self, format, *args):  # noqa: A002 - silence the default stderr access log
        pass

    def handle_one_request(self):
        # Same as the base class, but every method goes through `proxy`.
        try:
            self.raw_requestline = self.rfile.readline(65537)
            if len(self.raw_requestline) > 65536:
                self.send_error(414)
                return
            if not self.raw_requestline:
                self.close_connection = True
                return
            self.expect_continue = False
            if not self.parse_request():
                return
            self.proxy()
            self.wfile.flush()
        except (socket.timeout, ConnectionError) as error:
            self.log_error("connection: %r", error)
            self.close_connection = True

    def handle_expect_100(self):
        # Let the rule decide first: a faulted request gets its final status instead of 100 Continue.
        self.expect_continue = True
        return True

    def log_request_line(self, status, injected):
        self.server.log(
            method=self.command, path=self.path, status=status, injected=injected,
            authorization=self.headers.get("Authorization") is not None)

    def proxy(self):
        rule = self.server.rules.match(self.command, self.path, self.headers)
        if rule and rule.get("delay"):
            time.sleep(float(rule["delay"]))
        if rule and rule.get("reset"):
            self.log_request_line(0, True)
            self.close_connection = True
            try:
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
            except OSError:
                pass
            return
        if rule and rule.get("status"):
            self.fault(rule)
            return
        self.forward(location_base=(rule or {}).get("locationBase"))

    def continue_if_expected(self):
        if self.expect_continue:
            self.expect_continue = False
            self.wfile.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            self.wfile.flush()

    def request_body_chunks(self):
        """The request body as it arrives, de-chunked if the client sent it chunked."""
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            while True:
                size_line = self.rfile.readline(65537)
                size = int(size_line.split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                        pass
                    return
                remaining = size
                while remaining:
                    data = self.rfile.read(min(CHUNK, remaining))
                    if not data:
                        raise ClientGone("client closed mid-body")
                    remaining -= len(data)
                    yield data
                self.rfile.readline(65537)
        else:
            remaining = int(self.headers.get("Content-Length") or 0)
            while remaining:
                data = self.rfile.read(min(CHUNK, remaining))
                if not data:
                    raise ClientGone("client closed mid-body")
                remaining -= len(data)
                yield data

    def has_body(self):
        return self.headers.get("Transfer-Encoding", "").lower() == "chunked" or int(
            self.headers.get("Content-Length") or 0) > 0

    def fault(self, rule):
        status = int(rule["status"])
        expected_continue = self.expect_continue
        if self.has_body() and not expected_continue:
            for _ in self.request_body_chunks():
                pass
        elif expected_continue:
            # The client is waiting for 100 Continue; answering now means it will not send the body,
            # so the connection cannot be reused.
            self.close_connection = True
        body = rule.get("body")
        if body is None:
            body = json.dumps({"errors": [{"code": "UNKNOWN", "message": f"injected fault {status}", "detail": None}]})
        data = body.encode() if isinstance(body, str) else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        if rule.get("retryAfter") is not None:
            self.send_header("Retry-After", str(rule["retryAfter"]))
        for name, value in (rule.get("headers") or {}).items():
            self.send_header(name, str(value))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)
        self.log_request_line(status, True)

    def forward(self, location_base=None):
        backend = self.server.backend
        connection = http.client.HTTPConnection(backend.hostname, backend.port or 80, timeout=120)
        try:
            connection.putrequest(self.command, self.path, skip_host=True, skip_accept_encoding=True)
            chunked_in = self.headers.get("Transfer-Encoding", "").lower() == "chunked"
            for name, value in self.headers.items():
                lower = name.lower()
                if lower in HOP_BY_HOP or lower == "expect":
                    continue
                connection.putheader(name, value)
            if chunked_in:
                connection.putheader("Transfer-Encoding", "chunked")
            connection.endheaders()
            if self.has_body():
                self.continue_if_expected()
                for data in self.request_body_chunks():
                    if chunked_in:
                        connection.send(b"%x\r\n%s\r\n" % (len(data), data))
                    else:
                        connection.send(data)
                if chunked_in:
                    connection.send(b"0\r\n\r\n")
            response = connection.getresponse()
            self.relay(response, location_base)
        except ClientGone:
            raise
        except (OSError, http.client.HTTPException) as error:
            data = json.dumps({"errors": [{"code": "UNKNOWN", "message": f"fault proxy: backend: {error}"}]}).encode()
            self.send_response(502)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            self.log_request_line(502, False)
        finally:
            connection.close()

    def relay(self, response, location_base=None):
        self.send_response_only(response.status, response.reason)
        length = response.getheader("Content-Length")
        bodiless = self.command == "HEAD" or response.status in (204, 304) or 100 <= response.status < 200
        for name, value in response.getheaders():
            lower = name.lower()
            if lower in HOP_BY_HOP:
                continue
            if lower == "location" and value.startswith(self.server.backend_base):
                value = self.proxy_base() + value[len(self.server.backend_base):]
            if lower == "location" and location_base:
                moved = urllib.parse.urlsplit(value)
                value = location_base.rstrip("/") + urllib.parse.urlunsplit(("", "", moved.path, moved.query, moved.fragment))
            self.send_header(name, value)
        chunked_out = length is None and not bodiless
        if chunked_out:
            self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        if not bodiless:
            while True:
                data = response.read(CHUNK)
                if not data:
                    break
                self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data) if chunked_out else data)
            if chunked_out:
                self.wfile.write(b"0\r\n\r\n")
        self.log_request_line(response.status, False)

    def proxy_base(self):
        host = self.headers.get("Host") or "%s:%d" % self.server.server_address[:2]
        return f"http://{host}"


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1", help="loopback address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--backend", required=True, help="the registry, e.g. http://127.0.0.1:5000")
    parser.add_argument("--rules", required=True, help="JSON rules file, re-read on every request")
    args = parser.parse_args()

    backend = urllib.parse.urlsplit(args.backend)
    loopback = ("127.0.0.1", "::1", "localhost")
    if args.host not in loopback or backend.hostname not in loopback or backend.scheme != "http":
        parser.error("the fault proxy listens on and forwards to plain-HTTP loopback addresses only")
    server = Server((args.host, args.port), args.backend, Rules(args.rules))
    print(json.dumps({"listening": f"http://{args.host}:{args.port}", "backend": args.backend}), flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
