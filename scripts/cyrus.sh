#!/usr/bin/env bash
# Provisions a private Cyrus IMAP for the tests, next to Dovecot.
#
# Debian's cyrus-imapd conflicts with dovecot-imapd as a package, so this installs only the
# libraries Cyrus links against (ordinary packages, no conflict) and unpacks the two Cyrus packages
# into a private root under .cache/cyrus/ (ignored by git). The tests (internal/cyrus) find it
# there, or wherever MAILSYNC_CYRUS_ROOT points, and skip with one line when it is absent.
#
#   scripts/cyrus.sh            provision (idempotent: does nothing when the root is complete)
#   scripts/cyrus.sh --check    exit 0 if provisioned, 1 if not
set -euo pipefail
cd "$(dirname "$0")/.."

root=${MAILSYNC_CYRUS_ROOT:-$PWD/.cache/cyrus/root}
say() { printf '==> cyrus: %s\n' "$*" >&2; }

# Cyrus's own libraries live in the private root too: the tests run it with LD_LIBRARY_PATH.
provisioned() {
  [ -x "$root/usr/lib/cyrus/bin/master" ] && [ -x "$root/usr/lib/cyrus/bin/imapd" ] &&
    command -v saslpasswd2 >/dev/null 2>&1 &&
    ! LD_LIBRARY_PATH=$root/usr/lib/x86_64-linux-gnu ldd "$root/usr/lib/cyrus/bin/imapd" | grep -q 'not found'
}

if [ "${1:-}" = --check ]; then
  provisioned
  exit
fi
if provisioned; then
  exit 0
fi
if [ "$(id -u)" != 0 ]; then
  say "not provisioned and not root: run scripts/cyrus.sh as root once"
  exit 1
fi

# What cyrus-common and cyrus-imapd link against (their Depends, minus what a private root does not
# need: an MTA, debconf, init scripts), and saslpasswd2 to write the private sasldb.
libs=(libclamav12 libical3 libicu72 libjansson4 libkrb5-3 libldap-2.5-0 libpcre3 libpq5 libsasl2-2
  libsasl2-modules libsasl2-modules-db libsqlite3-0 libssl3 libwrap0 libxapian30 libxml2 libzephyr4
  zlib1g sasl2-bin)
say "installing the libraries Cyrus needs"
apt-get update -qq >/dev/null || true
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${libs[@]}" >/dev/null

debs=$(dirname "$root")/debs
mkdir -p "$debs" "$root"
say "downloading cyrus-common and cyrus-imapd into $debs"
(cd "$debs" && apt-get download -qq cyrus-common cyrus-imapd)
for deb in "$debs"/cyrus-common_*.deb "$debs"/cyrus-imapd_*.deb; do
  dpkg-deb -x "$deb" "$root"
done
provisioned || { say "unpacked, but $root/usr/lib/cyrus/bin/imapd does not run (missing libraries?)"; exit 1; }
say "provisioned under $root"
