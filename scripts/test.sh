#!/usr/bin/env bash
# Runs every test of mailsync: go vet, then go test -race over every package.
#
# The tests use real parts: SQLite files, a PostgreSQL server, a private Dovecot and a private
# Cyrus IMAP they start themselves, and headless Chromium. This script installs what is missing
# from Debian's packages (when run as root), provisions Cyrus (scripts/cyrus.sh) and makes sure
# PostgreSQL answers before the tests start.
#
#   scripts/test.sh [go test flags...]     e.g. scripts/test.sh -run TestConformance ./internal/store
#
# MAILSYNC_TEST_POSTGRES (default postgres://postgres@127.0.0.1:5432/test?sslmode=disable) names the
# PostgreSQL the tests use; each test works in a schema of its own and drops it.
set -euo pipefail
cd "$(dirname "$0")/.."

command -v go >/dev/null 2>&1 || export PATH=$PATH:/usr/local/go/bin

say() { printf '==> %s\n' "$*" >&2; }

apt_updated=""
install_pkgs() {
  if [ "$(id -u)" != 0 ]; then
    say "missing packages: $* (run as root, or install them: apt-get install $*)"
    exit 1
  fi
  if [ -z "$apt_updated" ]; then
    apt-get update -qq >/dev/null
    apt_updated=1
  fi
  say "installing $*"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

need=()
command -v dovecot >/dev/null 2>&1 || [ -x /usr/sbin/dovecot ] || need+=(dovecot-imapd)
command -v chromium >/dev/null 2>&1 || [ -x /usr/bin/chromium ] || need+=(chromium)
command -v pg_isready >/dev/null 2>&1 || need+=(postgresql-client)
[ ${#need[@]} -eq 0 ] || install_pkgs "${need[@]}"

# Cyrus IMAP conflicts with dovecot-imapd as a package: scripts/cyrus.sh unpacks it into
# .cache/cyrus/ (ignored by git), once. Without it (not root, no network) the Cyrus tests skip.
if ! scripts/cyrus.sh --check; then
  if [ "$(id -u)" = 0 ]; then
    scripts/cyrus.sh || say "Cyrus could not be provisioned: its tests will skip"
  else
    say "Cyrus not provisioned (run scripts/cyrus.sh as root): its tests will skip"
  fi
fi

pg_url=${MAILSYNC_TEST_POSTGRES:-postgres://postgres@127.0.0.1:5432/test?sslmode=disable}
export MAILSYNC_TEST_POSTGRES=$pg_url
pg_hostport=${pg_url#*@}; pg_hostport=${pg_hostport%%/*}
pg_host=${pg_hostport%:*}; pg_port=${pg_hostport##*:}
[ "$pg_port" = "$pg_hostport" ] && pg_port=5432

pg_up() { pg_isready -q -h "$pg_host" -p "$pg_port" -t 2; }

start_postgres() {
  if ! ls /etc/postgresql/*/main >/dev/null 2>&1; then
    install_pkgs postgresql
  fi
  local ver
  ver=$(ls /etc/postgresql | sort -V | tail -n 1)
  local hba=/etc/postgresql/$ver/main/pg_hba.conf
  # The tests connect as postgres over TCP on loopback without a password.
  if ! grep -q '^host all postgres 127.0.0.1/32 trust' "$hba"; then
    sed -i '1i host all postgres 127.0.0.1/32 trust\nhost all postgres ::1/128 trust' "$hba"
  fi
  say "starting PostgreSQL $ver"
  pg_ctlcluster --skip-systemctl-redirect "$ver" main start || pg_ctlcluster --skip-systemctl-redirect "$ver" main restart
  for _ in $(seq 30); do pg_up && break; sleep 1; done
  local db=${pg_url##*/}; db=${db%%\?*}
  su postgres -c "psql -qtAc \"SELECT 1 FROM pg_database WHERE datname = '$db'\"" | grep -q 1 ||
    su postgres -c "createdb '$db'"
}

if ! pg_up; then
  start_postgres
fi
pg_up || { say "PostgreSQL does not answer at $pg_host:$pg_port"; exit 1; }

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
