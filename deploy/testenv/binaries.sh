# Sourced by the demos and benchmarks: the project's executables and a free loopback port.
# shellcheck shell=bash

# build_products CONFIGURATION PRODUCT…: builds the products (debug or release) and sets bin_dir to where they are.
# MANIFOLD_BIN_DIR names a directory of already built executables instead (nothing is built then).
build_products() {
    local configuration="$1" product
    shift
    case "$configuration" in
    debug | release) ;;
    *)
        echo "build configuration '$configuration' (MANIFOLD_DEMO_BUILD?): expected debug or release" >&2
        exit 64
        ;;
    esac
    bin_dir="${MANIFOLD_BIN_DIR:-}"
    [ -n "$bin_dir" ] && return 0
    for product in "$@"; do swift build -c "$configuration" --product "$product"; done
    bin_dir="$(swift build -c "$configuration" --show-bin-path)"
}

# A TCP port free on 127.0.0.1 at the time of asking.
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
