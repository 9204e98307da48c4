#!/usr/bin/env bash
# Lints mailsync: golangci-lint with .golangci.yml (package boundaries, errcheck, staticcheck,
# gofmt), then ESLint over the web UI's modules and tsc over their JSDoc types (// @ts-check,
# internal/web/eslint/tsconfig.json). scripts/test.sh runs it before the tests.
#
# golangci-lint is installed at the pinned version with `go install` when missing or different;
# ESLint and TypeScript come from internal/web/eslint/package-lock.json through `npm ci`.
set -euo pipefail
cd "$(dirname "$0")/.."

command -v go >/dev/null 2>&1 || export PATH=$PATH:/usr/local/go/bin

say() { printf '==> %s\n' "$*" >&2; }

golangci_version=v2.15.0
gobin=$(go env GOPATH)/bin
lint=$gobin/golangci-lint
if ! "$lint" version 2>/dev/null | grep -q "version ${golangci_version#v} "; then
  say "installing golangci-lint $golangci_version"
  go install "github.com/golangci/golangci-lint/v2/cmd/golangci-lint@$golangci_version"
fi
say "golangci-lint run ./..."
"$lint" run --allow-parallel-runners ./...

command -v npm >/dev/null 2>&1 || { say "npm is missing: install Node.js (20 or later) to lint the web UI"; exit 1; }
eslint_dir=internal/web/eslint
if [ ! -x "$eslint_dir/node_modules/.bin/eslint" ] || [ ! -x "$eslint_dir/node_modules/.bin/tsc" ] ||
  [ "$eslint_dir/package-lock.json" -nt "$eslint_dir/node_modules/.package-lock.json" ]; then
  say "npm ci in $eslint_dir"
  (cd "$eslint_dir" && npm ci --no-audit --no-fund --loglevel=error)
fi
say "eslint internal/web/static/js"
(cd internal/web && eslint/node_modules/.bin/eslint --config eslint/eslint.config.js --max-warnings 0 static/js)
say "tsc --noEmit -p $eslint_dir/tsconfig.json"
"$eslint_dir/node_modules/.bin/tsc" --noEmit -p "$eslint_dir/tsconfig.json"
