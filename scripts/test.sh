#!/usr/bin/env bash
# Runs every test of mailsync (the full run, which CI runs through .ci/run): go vet, then go test
# -race over every package, with nothing skipped.
#
# The tests use real parts: SQLite files, a PostgreSQL server, a private Dovecot and a private
# Cyrus IMAP they start themselves, and headless Chromium. This script first runs
# scripts/provision.sh, the one step that changes the host (as root: installs what is missing,
# creates the system users the IMAP servers run as, unpacks Cyrus, starts PostgreSQL), then runs
# the tests with MAILSYNC_TEST_STRICT=1: a test that would skip for want of a service fails
# instead, so a green run proves everything. `go test ./...` alone (make test) skips what is
# missing, with one line each.
#
#   scripts/test.sh [go test flags...]     e.g. scripts/test.sh -run TestConformance ./internal/store
#
# MAILSYNC_TEST_POSTGRES (default postgres://postgres@127.0.0.1:5432/test?sslmode=disable) names the
# PostgreSQL the tests use; each test works in a schema of its own and drops it.
set -euo pipefail
cd "$(dirname "$0")/.."

command -v go >/dev/null 2>&1 || export PATH=$PATH:/usr/local/go/bin
export PATH=$PATH:/usr/sbin:/sbin # where Debian puts dovecot, for the tests that look on PATH

say() { printf '==> %s\n' "$*" >&2; }

scripts/provision.sh

export MAILSYNC_TEST_POSTGRES=${MAILSYNC_TEST_POSTGRES:-postgres://postgres@127.0.0.1:5432/test?sslmode=disable}
export MAILSYNC_TEST_STRICT=1

say "go vet ./..."
go vet ./...
# Lint first: a boundary crossed or an error ignored fails the run like a failing test.
scripts/lint.sh
if [ $# -eq 0 ]; then
  set -- ./...
fi
# Test artifacts (the browser tests' screenshots) land in testdata-artifacts/ (ignored by git).
artifacts=$PWD/testdata-artifacts
rm -rf "$artifacts" && mkdir -p "$artifacts"
say "go test -race $*"
go test -race -count=1 -timeout 20m -artifacts -outputdir "$artifacts" "$@"
shots=$(find "$artifacts" -name '*.png' | wc -l)
say "$shots screenshots under testdata-artifacts/"
