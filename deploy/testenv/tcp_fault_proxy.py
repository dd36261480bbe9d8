#!/usr/bin/env python3
"""A fault-injecting TCP proxy for tests, on loopback in front of a loopback backend.

    tcp_fault_proxy.py --port 7444 --backend 127.0.0.1:7443 --rules rules.json

Bytes are relayed unchanged both ways, so TLS passes through: a client still verifies the backend's
certificate (the coordinator's has SAN IP:127.0.0.1, which the proxy's address matches). Faults are
injected at TCP level: latency, connections cut after some bytes, refused connections and partitions.

The rules file is a JSON list, re-read whenever it changes (a missing or empty file means no faults).
Each new connection takes the first rule that matches it; a rule matches with its `probability`,
at most `times` times:

    [{"action": "forward", "delay": 0.05, "cutAfterBytes": 20000, "direction": "either",
      "probability": 0.3, "times": -1}]

- action: "forward" (default) relays the bytes, applying delay and cutAfterBytes; "refuse" resets the
  new connection at once (RST, nothing relayed); "blackhole" accepts it and never relays anything in
  either direction (a partition: the client waits until its own timeout).
- delay: seconds slept before each chunk relayed (in `direction`), i.e. latency per chunk.
- cutAfterBytes: after this many bytes relayed in `direction`, both sides are reset (RST).
- direction: "up" (client to backend), "down" (backend to client) or "either" (default): which
  bytes `delay` and `cutAfterBytes` count.
- probability: chance (0...1, default 1) that the rule applies to a given new connection; when it
  does not, the next rule is considered.
- times: how many connections the rule applies to; -1 = forever (the default). The counts start
  over whenever the rules file is rewritten.

A "blackhole" rule also stalls connections that were already open when it was written: while any
blackhole rule is in the file, no byte is relayed on any connection (a partition of the link).
Removing the rule lets the held bytes through. With "healsWhenAClientGivesUp": true the partition also
ends by itself the moment a client closes a connection that has bytes held in it (it gave its request
up at its own deadline), until the rules file changes: a test swallows exactly one request that way,
however late it gets to clear the rules itself.

Each connection is logged to stdout as one JSON line when it ends: {"connection", "rule", "action",
"up", "down", "cut", "refused", "seconds"}; `rule` is the index of the rule that took it (null for
none), `up`/`down` the bytes relayed each way. Python 3 standard library only.
"""

import argparse
import itertools
import json
import os
import random
import select
import socket
import struct
import sys
import threading
import time

CHUNK = 16 * 1024
# The receive buffer of a connection slowed by a delay: a slow link holds little in flight. Without a bound, the
# kernel grows the window (up to net.ipv4.tcp_rmem's maximum, 32 MiB on a machine with 24 GB) and the sender moves
# megabytes into socket buffers at once: a sender killed "mid-transfer" then has nothing left to lose, as the
# kernel still delivers what it had accepted.
SLOW_RECEIVE_BUFFER = 64 * 1024


def connect(address, slow):
    """A connection to the backend; a slow one with a small receive buffer, set before the handshake sizes the
    window."""
    if not slow:
        return socket.create_connection(address, timeout=10)
    host, port = address
    family, kind, proto, _, target = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SLOW_RECEIVE_BUFFER)
        sock.settimeout(10)
        sock.connect(target)
    except OSError:
        sock.close()
        raise
    return sock
LOOPBACK = ("127.0.0.1", "::1", "localhost")


class Rules:
    """The rules file plus how often each rule has been applied since the file last changed."""

    def __init__(self, path):
        self.path = path
        self.lock = threading.Lock()
        self.signature = None
        self.rules = []
        self.used = []
        self.healed = False

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
        self.healed = False
        try:
            rules = json.loads(raw) if raw.strip() else []
        except json.JSONDecodeError as error:
            print(json.dumps({"rulesError": str(error)}), flush=True)
            rules = []
        self.rules = [rule for rule in rules if isinstance(rule, dict)] if isinstance(rules, list) else []
        self.used = [0] * len(self.rules)

    def take(self):
        """The rule (index, rule) a new connection gets, or (None, {})."""
        with self.lock:
            self._reload()
            for index, rule in enumerate(self.rules):
                times = int(rule.get("times", -1))
                if times >= 0 and self.used[index] >= times:
                    continue
                if random.random() >= float(rule.get("probability", 1)):
                    continue
                self.used[index] += 1
                return index, rule
        return None, {}

    def partitioned(self):
        """Whether a blackhole rule is in force now: no byte is relayed on any connection."""
        with self.lock:
            self._reload()
            return not self.healed and any(rule.get("action") == "blackhole" for rule in self.rules)

    def client_gave_up(self):
        """A client closed a connection with bytes held in it: a self-healing partition ends."""
        with self.lock:
            self._reload()
            if any(rule.get("action") == "blackhole" and rule.get("healsWhenAClientGivesUp") for rule in self.rules):
                self.healed = True


def reset(sock):
    """Closes `sock` with an RST instead of an orderly FIN."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    try:
        sock.close()
    except OSError:
        pass


class Connection:
    """One client connection and its backend connection, relayed by one thread."""

    ids = itertools.count(1)

    def __init__(self, server, client):
        self.server = server
        self.client = client
        self.id = next(Connection.ids)
        self.started = time.monotonic()
        self.relayed = {"up": 0, "down": 0}
        self.cut = False

    def run(self):
        index, rule = self.server.rules.take()
        action = rule.get("action", "forward")
        try:
            if action == "refuse":
                reset(self.client)
                self.log(index, action, refused=True)
                return
            if action == "blackhole":
                self.hold()
                self.log(index, action)
                return
            try:
                backend = connect(self.server.backend, slow=bool(rule.get("delay")))
            except OSError as error:
                reset(self.client)
                self.log(index, action, refused=True, error=str(error))
                return
            backend.settimeout(None)
            self.relay(backend, rule)
            self.log(index, action)
        finally:
            try:
                self.client.close()
            except OSError:
                pass

    def hold(self):
        """Reads and drops what the client sends until it gives up."""
        while True:
            try:
                data = self.client.recv(CHUNK)
            except OSError:
                return
            if not data:
                return

    def counts(self, rule, direction):
        wanted = rule.get("direction", "either")
        return wanted == "either" or wanted == direction

    def relay(self, backend, rule):
        peers = {self.client: (backend, "up"), backend: (self.client, "down")}
        open_ends = {self.client, backend}
        delay = float(rule.get("delay") or 0)
        cut_after = rule.get("cutAfterBytes")
        counted = 0
        try:
            while open_ends:
                readable, _, _ = select.select(list(open_ends), [], [], 0.25)
                for source in readable:
                    try:
                        data = source.recv(CHUNK)
                    except OSError:
                        data = b""
                    target, direction = peers[source]
                    if not data:
                        # Half-close: pass the FIN on, keep relaying the other way.
                        open_ends.discard(source)
                        try:
                            target.shutdown(socket.SHUT_WR)
                        except OSError:
                            pass
                        continue
                    # Held while partitioned. What the client sends meanwhile is kept to relay after it, and its
                    # closing the connection (it gave its request up) is noticed: a self-healing partition ends then.
                    extra, client_eof = b"", False
                    while self.server.rules.partitioned():
                        if client_eof or self.client not in open_ends:
                            time.sleep(0.1)
                            continue
                        waiting, _, _ = select.select([self.client], [], [], 0.1)
                        if not waiting:
                            continue
                        try:
                            more = self.client.recv(CHUNK)
                        except OSError:
                            more = b""
                        if more:
                            extra += more
                        else:
                            client_eof = True
                            self.server.rules.client_gave_up()
                    if direction == "up":
                        data += extra
                    elif extra:
                        backend.sendall(extra)
                        self.relayed["up"] += len(extra)
                    if client_eof:
                        # The client is gone: what it sent still reaches the backend (a partition delays bytes, it
                        # does not drop them), then the backend sees its end; nothing more goes to the client.
                        open_ends.discard(self.client)
                        try:
                            if direction == "up":
                                backend.sendall(data)
                                self.relayed["up"] += len(data)
                            backend.shutdown(socket.SHUT_WR)
                        except OSError:
                            pass
                        continue
                    counts = self.counts(rule, direction)
                    if counts and delay:
                        time.sleep(delay)
                    if counts and cut_after is not None:
                        allowed = int(cut_after) - counted
                        if len(data) >= allowed:
                            if allowed > 0:
                                target.sendall(data[:allowed])
                                self.relayed[direction] += allowed
                            self.cut = True
                            return
                        counted += len(data)
                    target.sendall(data)
                    self.relayed[direction] += len(data)
        except OSError:
            pass
        finally:
            if self.cut:
                reset(self.client)
                reset(backend)
            else:
                try:
                    backend.close()
                except OSError:
                    pass

    def log(self, index, action, refused=False, error=None):
        fields = {
            "connection": self.id, "rule": index, "action": action, "up": self.relayed["up"],
            "down": self.relayed["down"], "cut": self.cut, "refused": refused,
            "seconds": round(time.monotonic() - self.started, 3),
        }
        if error:
            fields["error"] = error
        self.server.log(fields)


class Server:
    def __init__(self, host, port, backend, rules):
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.listener = socket.socket(family, socket.SOCK_STREAM)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind((host, port))
        self.listener.listen(128)
        self.backend = backend
        self.rules = rules
        self.log_lock = threading.Lock()

    def log(self, fields):
        with self.log_lock:
            print(json.dumps(fields), flush=True)

    def serve_forever(self):
        while True:
            client, _ = self.listener.accept()
            client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            threading.Thread(target=Connection(self, client).run, daemon=True).start()


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1", help="loopback address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--backend", required=True, help="HOST:PORT on loopback, e.g. 127.0.0.1:7443")
    parser.add_argument("--rules", required=True, help="JSON rules file, re-read when it changes")
    args = parser.parse_args()

    backend_host, _, backend_port = args.backend.rpartition(":")
    backend_host = backend_host.strip("[]")
    if args.host not in LOOPBACK or backend_host not in LOOPBACK or not backend_port.isdigit():
        parser.error("the TCP fault proxy listens on and forwards to loopback HOST:PORT addresses only")
    server = Server(args.host, args.port, (backend_host, int(backend_port)), Rules(args.rules))
    print(json.dumps({"listening": f"{args.host}:{args.port}", "backend": args.backend}), flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
