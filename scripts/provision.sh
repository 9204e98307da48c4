#!/usr/bin/env bash
# Provisions this machine for the full test run: the only place that changes the host.
#
# It installs what is missing from Debian's packages (dovecot-imapd, chromium, PostgreSQL and its
# client), creates the unprivileged system users the private IMAP servers run as
# (mailsync-vmail for Dovecot, mailsync-cyrus for Cyrus), unpacks Cyrus into .cache/cyrus/
# (scripts/cyrus.sh), lets the postgres user in over loopback TCP without a password
# (pg_hba.conf), starts PostgreSQL and creates the test database. Each step does nothing when
# already done, so running it again is cheap. scripts/test.sh runs it first; the tests themselves
# never change the host: they skip (or, under MAILSYNC_TEST_STRICT=1, fail) when something is
# missing.
#
#   scripts/provision.sh            provision (as root; otherwise it says what is missing and fails)
#   scripts/provision.sh --check    exit 0 if everything is there, 1 (naming what is not) if not
#
# MAILSYNC_TEST_POSTGRES (default postgres://postgres@127.0.0.1:5432/test?sslmode=disable) names the
# PostgreSQL to make answer; only a local one is started.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH=$PATH:/usr/sbin:/sbin

say() { printf '==> %s\n' "$*" >&2; }

check_only=""
[ "${1:-}" = --check ] && check_only=1
root=""
[ "$(id -u)" = 0 ] && root=1
missing=()

apt_updated=""
install_pkgs() {
  if [ -n "$check_only" ] || [ -z "$root" ]; then
    missing+=("packages: $*")
    return
  fi
  if [ -z "$apt_updated" ]; then
    apt-get update -qq >/dev/null
    apt_updated=1
  fi
  say "installing $*"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

need=()
command -v dovecot >/dev/null 2>&1 || need+=(dovecot-imapd)
command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 ||
  command -v google-chrome >/dev/null 2>&1 || [ -n "${MAILSYNC_CHROMIUM:-}" ] || need+=(chromium)
command -v pg_isready >/dev/null 2>&1 || need+=(postgresql-client)
[ ${#need[@]} -eq 0 ] || install_pkgs "${need[@]}"

# The private Dovecot's mail processes and the private Cyrus run as these (neither runs as root).
for u in mailsync-vmail mailsync-cyrus; do
  id -u "$u" >/dev/null 2>&1 && continue
  if [ -n "$check_only" ] || [ -z "$root" ]; then
    missing+=("system user $u")
    continue
  fi
  say "creating system user $u"
  useradd --system --user-group --no-create-home --shell /usr/sbin/nologin "$u" ||
    id -u "$u" >/dev/null 2>&1 # another run may have created it meanwhile
done

# Cyrus IMAP conflicts with dovecot-imapd as a package: scripts/cyrus.sh unpacks it into
# .cache/cyrus/ (ignored by git), once.
if ! scripts/cyrus.sh --check; then
  if [ -n "$check_only" ] || [ -z "$root" ]; then
    missing+=("Cyrus (scripts/cyrus.sh)")
  else
    scripts/cyrus.sh
  fi
fi

pg_url=${MAILSYNC_TEST_POSTGRES:-postgres://postgres@127.0.0.1:5432/test?sslmode=disable}
pg_hostport=${pg_url#*@}; pg_hostport=${pg_hostport%%/*}
pg_host=${pg_hostport%:*}; pg_port=${pg_hostport##*:}
[ "$pg_port" = "$pg_hostport" ] && pg_port=5432

pg_up() { command -v pg_isready >/dev/null 2>&1 && pg_isready -q -h "$pg_host" -p "$pg_port" -t 2; }

start_postgres() {
  if ! ls /etc/postgresql/*/main >/dev/null 2>&1; then
    install_pkgs postgresql
  fi
  local ver
  ver=$(ls /etc/postgresql | sort -V | tail -n 1)
  local hba=/etc/postgresql/$ver/main/pg_hba.conf
  # The tests connect as postgres over TCP on loopback without a password.
  if ! grep -q '^host all postgres 127.0.0.1/32 trust' "$hba"; then
    say "letting postgres in over loopback without a password ($hba)"
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
  if [ -n "$check_only" ] || [ -z "$root" ]; then
    missing+=("PostgreSQL answering at $pg_host:$pg_port")
  else
    start_postgres
    pg_up || missing+=("PostgreSQL answering at $pg_host:$pg_port")
  fi
fi

if [ ${#missing[@]} -gt 0 ]; then
  for m in "${missing[@]}"; do say "missing: $m"; done
  [ -n "$check_only" ] || [ -n "$root" ] || say "run scripts/provision.sh as root to provide them"
  exit 1
fi
[ -n "$check_only" ] || say "provisioned: Dovecot, Chromium, Cyrus, PostgreSQL at $pg_host:$pg_port"
