#!/usr/bin/env bash
# Starts or stops a real CNCF docker-registry on loopback, for humans and demo scripts.
# (The Swift tests start their own through Tests/ManifoldTestSupport/RegistryEnvironment.swift.)
#
#   deploy/testenv/registry-env.sh start DIR MODE PORT    # MODE: http | tls | basic | token
#   deploy/testenv/registry-env.sh stop DIR
#
# DIR receives the registry's data, config, certificates (ca.crt to trust), htpasswd, token
# signing key, logs and PID files. `token` mode also runs token_server.py on TOKEN_PORT
# (default PORT+1). Credentials: USERNAME/PASSWORD environment variables, default
# manifold / manifold-password; token mode adds a pull-only user reader / reader-password.
# ACCESS_LOG=1 writes one line per request to DIR/registry.log (benchmarks count requests per build with it).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
USERNAME="${USERNAME:-manifold}"
PASSWORD="${PASSWORD:-manifold-password}"
SERVICE="manifold-test-registry"
ISSUER="manifold-test-issuer"

usage() {
    echo "usage: $0 start DIR http|tls|basic|token PORT   |   $0 stop DIR" >&2
    exit 2
}

generate_certificates() {
    local dir="$1"
    [ -f "$dir/server.crt" ] && return 0
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
        -keyout "$dir/ca.key" -out "$dir/ca.crt" -days 30 -subj "/CN=Manifold Test CA" \
        -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
        -keyout "$dir/server.key" -out "$dir/server.csr" -subj "/CN=localhost" 2>/dev/null
    printf 'basicConstraints=CA:FALSE\nsubjectAltName=IP:127.0.0.1,IP:::1,DNS:localhost\nextendedKeyUsage=serverAuth\n' \
        >"$dir/server.ext"
    openssl x509 -req -in "$dir/server.csr" -CA "$dir/ca.crt" -CAkey "$dir/ca.key" -CAcreateserial \
        -out "$dir/server.crt" -days 30 -extfile "$dir/server.ext" 2>/dev/null
}

generate_token_key() {
    local dir="$1"
    [ -f "$dir/token.crt" ] && return 0
    openssl req -x509 -newkey rsa:2048 -nodes -keyout "$dir/token.key" -out "$dir/token.crt" \
        -days 30 -subj "/CN=manifold-test-token-signer" 2>/dev/null
}

wait_for_v2() {
    local url="$1" curl_args=("${@:2}") i code
    for i in $(seq 1 200); do
        code="$(curl -s -o /dev/null -w '%{http_code}' "${curl_args[@]}" "$url/v2/" || true)"
        case "$code" in 200 | 401) return 0 ;; esac
        sleep 0.05
    done
    echo "registry at $url did not answer /v2/; its log:" >&2
    cat "$DIR/registry.log" >&2 || true
    return 1
}

start() {
    local mode="$1" port="$2"
    case "$mode" in http | tls | basic | token) ;; *) usage ;; esac
    mkdir -p "$DIR/data"
    if [ -f "$DIR/registry.pid" ] && kill -0 "$(cat "$DIR/registry.pid")" 2>/dev/null; then
        echo "a registry started in $DIR is still running (pid $(cat "$DIR/registry.pid")); stop it first" >&2
        exit 1
    fi

    local scheme=http tls="" auth="" curl_args=()
    if [ "$mode" != http ]; then
        generate_certificates "$DIR"
        scheme=https
        tls="  tls: {certificate: $DIR/server.crt, key: $DIR/server.key}"
        curl_args=(--cacert "$DIR/ca.crt")
    fi
    case "$mode" in
        basic)
            htpasswd -Bbn "$USERNAME" "$PASSWORD" >"$DIR/htpasswd"
            auth="auth: {htpasswd: {realm: manifold-test, path: $DIR/htpasswd}}"
            ;;
        token)
            generate_token_key "$DIR"
            local token_port="${TOKEN_PORT:-$((port + 1))}"
            # HTTPS with the registry's certificate: Manifold refuses a realm that leaves HTTPS.
            auth="auth: {token: {realm: https://127.0.0.1:$token_port/token, service: $SERVICE, issuer: $ISSUER, rootcertbundle: $DIR/token.crt}}"
            python3 "$HERE/token_server.py" --port "$token_port" --key "$DIR/token.key" --cert "$DIR/token.crt" \
                --tls-cert "$DIR/server.crt" --tls-key "$DIR/server.key" \
                --issuer "$ISSUER" --service "$SERVICE" --user "$USERNAME:$PASSWORD" \
                --readonly-user reader:reader-password >"$DIR/token-server.log" 2>&1 &
            echo $! >"$DIR/token.pid"
            ;;
    esac

    cat >"$DIR/config.yml" <<EOF
version: 0.1
log: {level: warn, accesslog: {disabled: $([ "${ACCESS_LOG:-0}" = 1 ] && echo false || echo true)}}
storage:
  filesystem: {rootdirectory: $DIR/data}
  delete: {enabled: true}
http:
  addr: 127.0.0.1:$port
  secret: manifold-test-secret
$tls
$auth
EOF
    docker-registry serve "$DIR/config.yml" >"$DIR/registry.log" 2>&1 &
    echo $! >"$DIR/registry.pid"
    wait_for_v2 "$scheme://127.0.0.1:$port" "${curl_args[@]}"

    echo "registry: $scheme://127.0.0.1:$port  (mode $mode, dir $DIR)"
    [ "$mode" != http ] && echo "ca:       $DIR/ca.crt"
    if [ "$mode" = basic ] || [ "$mode" = token ]; then
        echo "user:     $USERNAME:$PASSWORD"
    fi
    if [ "$mode" = token ]; then
        echo "token:    http://127.0.0.1:${TOKEN_PORT:-$((port + 1))}/token (service $SERVICE); pull-only user reader:reader-password"
    fi
    echo "stop:     $0 stop $DIR"
}

stop() {
    local name pid
    for name in registry token; do
        [ -f "$DIR/$name.pid" ] || continue
        pid="$(cat "$DIR/$name.pid")"
        if kill -0 "$pid" 2>/dev/null; then
            kill "$pid"
            for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.05; done
            kill -0 "$pid" 2>/dev/null && kill -9 "$pid"
            echo "stopped $name (pid $pid)"
        fi
        rm -f "$DIR/$name.pid"
    done
}

[ $# -ge 2 ] || usage
COMMAND="$1"
DIR="$(mkdir -p "$2" && cd "$2" && pwd)"
case "$COMMAND" in
    start) [ $# -eq 4 ] || usage; start "$3" "$4" ;;
    stop) stop ;;
    *) usage ;;
esac
