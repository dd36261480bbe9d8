# Sourced by the demos and benchmarks: the project's executables and a free loopback port.
# shellcheck shell=bash

# build_products CONFIGURATION PRODUCT…: builds the products (debug or release) and sets bin_dir to where they are.
# A release build is the one the packages ship (coordinator/package.sh): the Swift runtime and Foundation linked in
# (--static-swift-stdlib), in .build/package, so benchmarks time what users run (it starts ~10 ms sooner than a
# dynamically linked build). MANIFOLD_BIN_DIR names a directory of already built executables instead (nothing is
# built then).
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
    local flags=(-c "$configuration")
    [ "$configuration" = release ] && flags+=(--static-swift-stdlib --scratch-path "$(pwd)/.build/package")
    for product in "$@"; do swift build "${flags[@]}" --product "$product"; done
    bin_dir="$(swift build "${flags[@]}" --show-bin-path)"
}

# A TCP port free on 127.0.0.1 at the time of asking.
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
