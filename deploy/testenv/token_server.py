#!/usr/bin/env python3
"""A Docker registry token server for tests (the "token" auth flow of CNCF distribution).

    token_server.py --port 5001 --key token.key --cert token.crt \
        --issuer manifold-test-issuer --user manifold:secret [--readonly-user reader:pw] [--expires-in 300] \
        [--tls-cert server.crt --tls-key server.key]

GET /token?service=S&scope=repository:NAME:pull,push&scope=...  with optional Basic credentials
returns {"token", "access_token", "expires_in", "issued_at"}. The JWT is RS256, signed by piping the
signing input to `openssl dgst -sha256 -sign KEY`, and carries the signing certificate in `x5c`.

Grants: anonymous callers get `pull` on repositories; users given with --user get every action they
ask for (pull, push, delete, *) on every repository and `*` on registry:catalog; --readonly-user
users get `pull` only. Wrong credentials get 401 with a JSON error.

POST /token (the OAuth2 form: grant_type=password|refresh_token, username, password, scope) is
accepted too; its refresh_token is a random string mapped to the user.

Every request is logged to stdout as one JSON line (method, path, decoded scopes, account,
status, granted access) so tests can assert which scopes a client asked for. The Authorization
header is never logged. Python 3 standard library only; listens on 127.0.0.1.
"""

import argparse
import base64
import datetime
import http.server
import json
import secrets
import socket
import ssl
import subprocess
import sys
import threading
import time
import urllib.parse

ALL_ACTIONS = ["pull", "push", "delete", "*"]


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


class TokenIssuer:
    def __init__(self, key_path, cert_path, issuer, expires_in):
        self.key_path = key_path
        self.issuer = issuer
        self.expires_in = expires_in
        with open(cert_path, "r", encoding="ascii") as f:
            der = ssl.PEM_cert_to_DER_cert(f.read())
        self.x5c = [base64.b64encode(der).decode("ascii")]

    def sign(self, data: bytes) -> bytes:
        # RS256 is RSASSA-PKCS1-v1_5 with SHA-256, which is what `openssl dgst -sign` does with an RSA key.
        result = subprocess.run(
            ["openssl", "dgst", "-sha256", "-sign", self.key_path],
            input=data, stdout=subprocess.PIPE, stderr=subprocess.PIPE, check=False,
        )
        if result.returncode != 0:
            raise RuntimeError("openssl dgst -sign failed: " + result.stderr.decode(errors="replace"))
        return result.stdout

    def issue(self, subject, service, access):
        now = int(time.time())
        lifetime = self.expires_in if self.expires_in > 0 else 60
        header = {"typ": "JWT", "alg": "RS256", "x5c": self.x5c}
        claims = {
            "iss": self.issuer,
            "sub": subject,
            "aud": service,
            "exp": now + lifetime,
            "nbf": now - 10,
            "iat": now,
            "jti": secrets.token_hex(16),
            "access": access,
        }
        signing_input = (
            b64url(json.dumps(header, separators=(",", ":")).encode())
            + "."
            + b64url(json.dumps(claims, separators=(",", ":")).encode())
        )
        signature = self.sign(signing_input.encode("ascii"))
        return signing_input + "." + b64url(signature), now


def parse_scope(scope):
    """'repository:team/app:pull,push' -> ('repository', 'team/app', ['pull', 'push'])."""
    first = scope.find(":")
    last = scope.rfind(":")
    if first < 0 or last == first:
        return None
    kind, name, actions = scope[:first], scope[first + 1:last], scope[last + 1:]
    return kind, name, [a for a in actions.split(",") if a]


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address, issuer, users, readonly, default_service):
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, Handler)
        self.issuer = issuer
        self.users = users
        self.readonly = readonly
        self.default_service = default_service
        self.refresh_tokens = {}
        self.lock = threading.Lock()


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "manifold-test-token-server"

    def log_message(self, format, *args):  # noqa: A002 - silence the default stderr access log
        pass

    def do_GET(self):
        parsed = urllib.parse.urlsplit(self.path)
        if parsed.path != "/token":
            return self.reply(404, {"errors": [{"code": "NOT_FOUND", "message": "only /token is served"}]}, None, [])
        query = urllib.parse.parse_qs(parsed.query, keep_blank_values=True)
        scopes = []
        for value in query.get("scope", []):
            scopes.extend(value.split(" "))
        account, error = self.basic_account()
        if error:
            return self.reply(401, error, query.get("account", [None])[0], scopes)
        service = query.get("service", [self.server.default_service])[0]
        self.grant_and_reply(account, service, scopes, refresh=False)

    def do_POST(self):
        parsed = urllib.parse.urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        form = urllib.parse.parse_qs(self.rfile.read(length).decode("utf-8", "replace"), keep_blank_values=True)
        if parsed.path != "/token":
            return self.reply(404, {"errors": [{"code": "NOT_FOUND", "message": "only /token is served"}]}, None, [])
        scopes = []
        for value in form.get("scope", []):
            scopes.extend(value.split(" "))
        grant = form.get("grant_type", [""])[0]
        service = form.get("service", [self.server.default_service])[0]
        if grant == "password":
            user, password = form.get("username", [""])[0], form.get("password", [""])[0]
            if self.server.users.get(user) != password:
                return self.reply(401, unauthorized("invalid username or password"), user, scopes)
            return self.grant_and_reply(user, service, scopes, refresh=True)
        if grant == "refresh_token":
            with self.server.lock:
                user = self.server.refresh_tokens.get(form.get("refresh_token", [""])[0])
            if user is None:
                return self.reply(401, unauthorized("unknown refresh token"), None, scopes)
            return self.grant_and_reply(user, service, scopes, refresh=True)
        return self.reply(400, {"error": "unsupported_grant_type"}, None, scopes)

    def basic_account(self):
        header = self.headers.get("Authorization")
        if not header:
            return None, None
        kind, _, value = header.partition(" ")
        if kind.lower() != "basic":
            return None, unauthorized("only Basic credentials are accepted")
        try:
            user, _, password = base64.b64decode(value.strip()).decode("utf-8").partition(":")
        except (ValueError, UnicodeDecodeError):
            return None, unauthorized("malformed Basic credentials")
        if self.server.users.get(user) != password:
            return None, unauthorized("invalid username or password")
        return user, None

    def grant_and_reply(self, account, service, scopes, refresh):
        access = []
        for scope in scopes:
            parsed = parse_scope(scope)
            if parsed is None:
                continue
            kind, name, wanted = parsed
            allowed = self.allowed_actions(account, kind)
            granted = [a for a in wanted if a in allowed]
            entry = next((e for e in access if e["type"] == kind and e["name"] == name), None)
            if entry is None:
                access.append({"type": kind, "name": name, "actions": granted})
            else:
                entry["actions"].extend(a for a in granted if a not in entry["actions"])
        token, issued = self.server.issuer.issue(account or "", service, access)
        body = {
            "token": token,
            "access_token": token,
            "issued_at": datetime.datetime.fromtimestamp(issued, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        }
        if self.server.issuer.expires_in > 0:
            body["expires_in"] = self.server.issuer.expires_in
        if refresh and account:
            refresh_token = secrets.token_hex(16)
            with self.server.lock:
                self.server.refresh_tokens[refresh_token] = account
            body["refresh_token"] = refresh_token
        self.reply(200, body, account, scopes, access)

    def allowed_actions(self, account, kind):
        if account is None:
            return ["pull"] if kind == "repository" else []
        if account in self.server.readonly:
            return ["pull"] if kind == "repository" else []
        return ALL_ACTIONS

    def reply(self, status, body, account, scopes, access=None):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        if status == 401:
            self.send_header("WWW-Authenticate", 'Basic realm="manifold-test-token-server"')
        self.end_headers()
        self.wfile.write(data)
        parsed = urllib.parse.urlsplit(self.path)
        line = {
            "method": self.command,
            "path": parsed.path,
            "query": urllib.parse.unquote_plus(parsed.query),
            "scopes": scopes,
            "account": account,
            "status": status,
            "granted": access or [],
        }
        print(json.dumps(line), flush=True)


def unauthorized(message):
    return {"errors": [{"code": "UNAUTHORIZED", "message": message, "detail": None}]}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1", help="loopback address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--key", required=True, help="RSA private key (PEM) that signs tokens")
    parser.add_argument("--cert", required=True, help="certificate of that key (PEM), put in x5c and the registry's rootcertbundle")
    parser.add_argument("--issuer", default="manifold-test-issuer")
    parser.add_argument("--service", default="manifold-test-registry", help="audience when the request names no service")
    parser.add_argument("--user", action="append", default=[], metavar="USER:PASSWORD", help="a user with pull+push everywhere")
    parser.add_argument("--readonly-user", action="append", default=[], metavar="USER[:PASSWORD]",
                        help="a pull-only user (USER:PASSWORD defines it, USER restricts one given with --user)")
    parser.add_argument("--expires-in", type=int, default=300, help="token lifetime in seconds; 0 omits expires_in (60 s tokens)")
    parser.add_argument("--tls-cert", help="serve HTTPS with this certificate (PEM) instead of plain HTTP")
    parser.add_argument("--tls-key", help="the private key (PEM) of --tls-cert")
    args = parser.parse_args()

    if args.host not in ("127.0.0.1", "::1", "localhost"):
        parser.error("the token server listens on loopback only")
    users, readonly = {}, set()
    for spec in args.user:
        user, sep, password = spec.partition(":")
        if not sep:
            parser.error(f"--user wants USER:PASSWORD, got {spec!r}")
        users[user] = password
    for spec in args.readonly_user:
        user, sep, password = spec.partition(":")
        if sep:
            users[user] = password
        elif user not in users:
            parser.error(f"--readonly-user {user}: no such --user")
        readonly.add(user)

    issuer = TokenIssuer(args.key, args.cert, args.issuer, args.expires_in)
    server = Server((args.host, args.port), issuer, users, readonly, args.service)
    scheme = "http"
    if args.tls_cert:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(args.tls_cert, args.tls_key)
        server.socket = context.wrap_socket(server.socket, server_side=True)
        scheme = "https"
    print(json.dumps({"listening": f"{scheme}://{args.host}:{args.port}/token"}), flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
