#!/usr/bin/env bash
# The one test command (README, `make test`, CI): installs the pinned tools, then runs every check.
# Each step says what it is doing; the first failure stops the run and is named.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
CARGO="${CARGO:-cargo}"

current=""
step() { current="$*"; printf '\n\033[1m==> %s\033[0m\n' "$*"; }
trap 'status=$?; [ $status -eq 0 ] || printf "\n\033[31mFAILED: %s (exit %s)\033[0m\n" "$current" "$status"' EXIT

step "install pinned tools"
scripts/install-tools.sh all

step "formatting (cargo fmt --check)"
"$CARGO" fmt --all --check

step "lints (clippy, warnings denied)"
"$CARGO" clippy --workspace --all-targets --locked -- -D warnings

step "build service binaries"
"$CARGO" build --workspace --bins --locked

step "unit and system tests"
results="target/test-results.log"
mkdir -p target
"$CARGO" test --workspace --locked 2>&1 | tee "$results"

step "offline Kubernetes checks (helm lint/template, schemas, checkov, yamllint, hadolint)"
scripts/chart-check.sh

# One closing line with the totals of every cargo test binary, for whoever reads the end of the log.
awk '/^test result:/ { passed += $4; failed += $6 } END { printf "tests: %d passed, %d failed\n", passed, failed }' "$results"
