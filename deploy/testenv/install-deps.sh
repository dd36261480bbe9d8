#!/usr/bin/env bash
# Installs what Manifold's real-registry tests need on a fresh Debian 12, as root. Idempotent:
# when everything is already there it touches nothing (no apt-get at all), so dev loops stay fast.
# Never starts a Docker daemon: only the docker CLI is needed (for `docker manifest inspect`).
set -euo pipefail

# Building and testing needs a Swift 6.2+ toolchain; on the project's machines it lives in /opt/swift.
if ! command -v swift >/dev/null 2>&1 && [ -x /opt/swift/usr/bin/swift ]; then
    export PATH="/opt/swift/usr/bin:$PATH"
fi
if ! command -v swift >/dev/null 2>&1; then
    echo "install-deps.sh: no swift on PATH. Manifold needs a Swift 6.2 or newer toolchain" >&2
    echo "install-deps.sh: (https://www.swift.org/install/linux/); add its usr/bin to PATH, e.g. /opt/swift/usr/bin" >&2
    exit 1
fi
swift_version=$(swift --version 2>/dev/null | sed -n 's/.*Swift version \([0-9]*\)\.\([0-9]*\).*/\1 \2/p;T;q')
if [ -n "$swift_version" ]; then
    read -r swift_major swift_minor <<<"$swift_version"
    if [ "$swift_major" -lt 6 ] || { [ "$swift_major" -eq 6 ] && [ "$swift_minor" -lt 2 ]; }; then
        echo "install-deps.sh: $(command -v swift) is Swift $swift_major.$swift_minor; Manifold needs 6.2 or newer" >&2
        exit 1
    fi
fi

PACKAGES=(docker-registry skopeo buildah apache2-utils openssl python3 ca-certificates
    libcurl4-openssl-dev libsqlite3-dev zlib1g-dev git jq curl sqlite3 util-linux strace uidmap passwd systemd iproute2 gdb
    man-db groff-base zsh fish)
COMMANDS=(docker-registry skopeo buildah htpasswd openssl python3 git jq curl tar gzip sha256sum sqlite3 mount dd strace
    newuidmap newgidmap useradd usermod runuser systemd-analyze ss gdb stdbuf man groff zsh fish)
LIBRARIES=(libcurl4-openssl-dev libsqlite3-dev zlib1g-dev)

missing_commands=()
for command in "${COMMANDS[@]}"; do
    command -v "$command" >/dev/null 2>&1 || missing_commands+=("$command")
done

apt_updated=no
apt_install() {
    if [ "$(id -u)" != 0 ]; then
        echo "install-deps.sh: need root to install: $*" >&2
        exit 1
    fi
    if [ "$apt_updated" = no ]; then
        echo "install-deps.sh: apt-get update"
        DEBIAN_FRONTEND=noninteractive apt-get update
        apt_updated=yes
    fi
    echo "install-deps.sh: installing $*"
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "$@"
}

if [ ${#missing_commands[@]} -eq 0 ] && dpkg -s "${LIBRARIES[@]}" >/dev/null 2>&1; then
    echo "install-deps.sh: all commands and libraries present, skipping apt"
else
    [ ${#missing_commands[@]} -gt 0 ] && echo "install-deps.sh: missing commands: ${missing_commands[*]}"
    apt_install "${PACKAGES[@]}"
fi

# A static busybox gives test images a shell, so a real buildah build can RUN steps (build secrets tests).
if dpkg -s busybox-static >/dev/null 2>&1; then
    echo "install-deps.sh: busybox-static present"
else
    apt_install busybox-static
fi

# A real browser for the dashboard's end-to-end tests (Tests/EndToEndTests/DashboardBrowserTests.swift): Debian's
# headless Chromium, driven through chromedriver (W3C WebDriver on loopback).
if dpkg -s chromium chromium-driver >/dev/null 2>&1; then
    echo "install-deps.sh: chromium and chromium-driver present"
else
    apt_install chromium chromium-driver
fi

# A real PostgreSQL server for the store's shared backend (Tests/ManifoldTestSupport/TestPostgres.swift starts a
# throwaway cluster from /usr/lib/postgresql/N/bin) and HAProxy to put replicas behind one address. The package's
# own cluster service is not needed: keep its maintainer scripts from starting it.
if dpkg -s postgresql haproxy >/dev/null 2>&1; then
    echo "install-deps.sh: postgresql and haproxy present"
else
    policy=/usr/sbin/policy-rc.d
    created_policy=no
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\nexit 101\n' >"$policy"
        chmod +x "$policy"
        created_policy=yes
    fi
    apt_install postgresql haproxy || { [ "$created_policy" = yes ] && rm -f "$policy"; exit 1; }
    [ "$created_policy" = yes ] && rm -f "$policy"
fi

if python3 -c 'import jsonschema' 2>/dev/null; then
    echo "install-deps.sh: python3 jsonschema present"
else
    apt_install python3-jsonschema
fi

# A real Prometheus text-format parser for the coordinator's /metrics tests (CoordinatorMetricsTests).
if /usr/bin/python3 -c 'import prometheus_client.parser' 2>/dev/null; then
    echo "install-deps.sh: python3 prometheus_client present"
else
    apt_install python3-prometheus-client
fi

if command -v docker >/dev/null 2>&1; then
    echo "install-deps.sh: docker CLI present at $(command -v docker)"
else
    # Debian 12 has no daemon-less docker CLI package; docker.io carries the CLI. Keep its
    # maintainer scripts from starting any service while it is installed.
    if apt-cache policy docker-cli 2>/dev/null | grep 'Candidate: [0-9]' >/dev/null; then
        docker_package=docker-cli
    else
        docker_package=docker.io
    fi
    policy=/usr/sbin/policy-rc.d
    created_policy=no
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\nexit 101\n' >"$policy"
        chmod +x "$policy"
        created_policy=yes
    fi
    apt_install "$docker_package" || { [ "$created_policy" = yes ] && rm -f "$policy"; exit 1; }
    [ "$created_policy" = yes ] && rm -f "$policy"
    echo "install-deps.sh: installed the docker CLI from $docker_package (no daemon is started)"
fi

docker-registry --version
skopeo --version
echo "install-deps.sh: done"
