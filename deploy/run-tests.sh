#!/usr/bin/env bash
# The full test suite, as CI runs it: installs what the tests need (Debian, as root), checks
# formatting, builds, and runs every test against real registries, processes and files on loopback.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"

bash deploy/testenv/install-deps.sh

echo "==> swift format lint"
swift format lint --strict --recursive Package.swift Sources Tests

echo "==> swift build"
swift build --build-tests

# The HTTP client's tests watch transfers as they happen; they run on their own so the
# process-heavy registry and end-to-end suites cannot starve them of the machine's two cores.
echo "==> swift test: ManifoldHTTPTests"
swift test --skip-build --filter ManifoldHTTPTests

echo "==> swift test: libraries, registry and coordinator"
swift test --skip-build --skip ManifoldHTTPTests --skip EndToEndTests

# The end-to-end suite runs the real binaries as separate processes (coordinators that are killed and
# restarted, registries, skopeo); alone, its waits measure the product rather than a crowded machine.
echo "==> swift test: EndToEndTests"
swift test --skip-build --filter EndToEndTests
