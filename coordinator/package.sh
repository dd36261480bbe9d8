#!/usr/bin/env bash
# Packages a Manifold executable for Linux as a tarball laid out for /usr/local (or any prefix):
#
#   bin/PRODUCT
#   bin/manifold-coordinator                           with manifold: the coordinator, which `manifold init` and
#                                                      `manifold serve` hand over to (the CLI links none of it)
#   share/man/man1/PRODUCT.1, PRODUCT.SUBCOMMAND….1     one page per command (`man manifold.build.submit`)
#   share/bash-completion/completions/PRODUCT          found by bash-completion under /usr/local/share
#   share/zsh/site-functions/_PRODUCT                  on zsh's default fpath
#   share/fish/vendor_completions.d/PRODUCT.fish       loaded by fish
#   lib/systemd/system/PRODUCT.service                 a unit systemd finds under /usr/local/lib
#   share/doc/PRODUCT/                                 README and example configuration
#
# Usage: coordinator/package.sh [--debug] [--bin-path DIR] [--output DIR] [--cli-only] manifold|manifold-agent
#   (agent/package.sh is this script for manifold-agent.)
#   --cli-only       with manifold: the CLI alone, for hosts that submit builds and run no coordinator
#                    (manifold-cli-VERSION-linux-ARCH.tar.gz: no manifold-coordinator, no unit, the project's README)
#   --debug          build in debug mode instead of release
#   --bin-path DIR   package the executables already built in DIR instead of building them (and use DIR's
#                    generate-manual, swift-argument-parser's manual generator, when it is there)
# The release build links the Swift runtime and Foundation statically (--static-swift-stdlib, in .build/package): the
# package needs no Swift toolchain on the host, only libcurl, libsqlite3 and zlib. A debug build, or one given with
# --bin-path that loads the runtime from a toolchain, is packaged with a warning that it runs only beside that toolchain.
#   --output DIR     where the tarball goes (default: .build/packages)
# Install:  tar -xzf manifold-VERSION-linux-ARCH.tar.gz -C /usr/local --strip-components=1
#
# The manual pages and completions are generated from the executable's own command definitions (swift-argument-
# parser's generate-manual tool and --generate-completion-script), so they always match the flags it accepts.
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
configuration=release
bin_path=""
output="$root/.build/packages"
product=""
cli_only=0
while [ $# -gt 0 ]; do
    case "$1" in
    --debug) configuration=debug ;;
    --bin-path) bin_path="${2:?--bin-path needs a directory}"; shift ;;
    --output) output="${2:?--output needs a directory}"; shift ;;
    --cli-only) cli_only=1 ;;
    manifold | manifold-agent) product="$1" ;;
    *)
        echo "package.sh: unknown argument '$1'; expected [--debug] [--bin-path DIR] [--output DIR] [--cli-only]" \
            "manifold|manifold-agent" >&2
        exit 64
        ;;
    esac
    shift
done
if [ -z "$product" ]; then
    echo "package.sh: name the executable to package: manifold or manifold-agent" >&2
    exit 64
fi
if [ "$cli_only" = 1 ] && [ "$product" != manifold ]; then
    echo "package.sh: --cli-only packages the manifold CLI alone; leave it out for $product" >&2
    exit 64
fi
# The CLI and, beside it, the coordinator's executable it hands `init` and `serve` to.
executables=("$product")
[ "$product" = manifold ] && [ "$cli_only" = 0 ] && executables+=(manifold-coordinator)
package="$product"
[ "$cli_only" = 1 ] && package=manifold-cli
if ! command -v swift >/dev/null 2>&1 && [ -x /opt/swift/usr/bin/swift ]; then
    export PATH="/opt/swift/usr/bin:$PATH"
fi

cd "$root"
if [ -z "$bin_path" ]; then
    if [ "$configuration" = release ]; then
        # The Swift runtime and Foundation linked in: the package runs on a host without a Swift toolchain (it needs
        # only libcurl, libsqlite3 and zlib from the distribution). A scratch path of its own, so the other release
        # builds (benchmarks) keep theirs.
        build=(swift build -c release --static-swift-stdlib --scratch-path "$root/.build/package")
    else
        build=(swift build -c debug)
    fi
    for built in "${executables[@]}"; do "${build[@]}" --product "$built"; done
    bin_path="$("${build[@]}" --show-bin-path)"
fi
for built in "${executables[@]}"; do
    if [ ! -x "$bin_path/$built" ]; then
        echo "package.sh: $bin_path/$built is not an executable; build it first or leave out --bin-path" >&2
        exit 66
    fi
done
executable="$bin_path/$product"
# An executable that loads the Swift runtime from a toolchain runs only on hosts with that very toolchain at that path
# (Swift has no stable ABI on Linux): say so, with where it loads it from.
for built in "${executables[@]}"; do
    runtime="$(ldd "$bin_path/$built" 2>/dev/null | awk '$1 ~ /^lib(swiftCore|Foundation)\.so/ && !found {print $3; found = 1}')"
    if [ -n "$runtime" ]; then
        echo "package.sh: warning: $bin_path/$built links the Swift runtime dynamically ($runtime): the package runs" \
            "only where that toolchain is installed at the same path. For a self-contained package leave out --bin-path" \
            "and --debug (a release build with --static-swift-stdlib)." >&2
    fi
done
# The manual generator is part of swift-argument-parser; a debug build of it is enough to write text files. One
# already built next to the executables is used as it is.
generator="$bin_path/generate-manual"
if [ ! -x "$generator" ]; then
    swift build --product generate-manual >/dev/null
    generator="$(swift build --show-bin-path)/generate-manual"
fi

version="$("$executable" --version)"
case "$(uname -m)" in
x86_64) arch=amd64 ;;
aarch64 | arm64) arch=arm64 ;;
*) arch="$(uname -m)" ;;
esac
name="$package-$version-linux-$arch"
staging="$(mktemp -d)"
trap 'rm -rf "$staging"' EXIT
top="$staging/$name"
mkdir -p "$top/bin" "$top/share/man/man1" "$top/share/bash-completion/completions" "$top/share/zsh/site-functions" \
    "$top/share/fish/vendor_completions.d" "$top/share/doc/$product"

for built in "${executables[@]}"; do install -m 0755 "$bin_path/$built" "$top/bin/$built"; done
"$generator" "$executable" --multi-page --output-directory "$top/share/man/man1" \
    --date "$(git log -1 --format=%cs 2>/dev/null || date +%F)"
# An empty line in mdoc is a paragraph break that groff warns about; say it the way mdoc does.
sed -i 's/^$/.Pp/' "$top/share/man/man1/"*.1
"$executable" --generate-completion-script bash >"$top/share/bash-completion/completions/$product"
"$executable" --generate-completion-script zsh >"$top/share/zsh/site-functions/_$product"
"$executable" --generate-completion-script fish >"$top/share/fish/vendor_completions.d/$product.fish"

case "$package" in
manifold-cli)
    install -m 0644 README.md "$top/share/doc/$product/README.md"
    ;;
manifold)
    mkdir -p "$top/lib/systemd/system"
    install -m 0644 coordinator/manifold.service "$top/lib/systemd/system/"
    install -m 0644 coordinator/README.md "$top/share/doc/$product/README.md"
    install -m 0644 coordinator/manifold.yaml.example "$top/share/doc/$product/"
    ;;
manifold-agent)
    mkdir -p "$top/lib/systemd/system"
    install -m 0644 agent/manifold-agent.service "$top/lib/systemd/system/"
    install -m 0644 agent/README.md "$top/share/doc/$product/README.md"
    install -m 0644 agent/agent.conf.example "$top/share/doc/$product/"
    install -m 0755 agent/setup-rootless.sh "$top/share/doc/$product/"
    ;;
esac

mkdir -p "$output"
tar -C "$staging" --owner=0 --group=0 --numeric-owner --sort=name -czf "$output/$name.tar.gz" "$name"
echo "$output/$name.tar.gz"
