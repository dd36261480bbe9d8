#!/usr/bin/env bash
# Packages manifold-agent for Linux: coordinator/package.sh with the agent's files (unit, example config,
# setup-rootless.sh), man pages and shell completions. Same options: [--debug] [--bin-path DIR] [--output DIR].
exec "$(dirname "$0")/../coordinator/package.sh" "$@" manifold-agent
