#!/usr/bin/env bash
# Fetch beanstalkd 1.13 (Debian trixie's package) into .cache/beanstalkd-1.13/,
# so the integration tests can run against it as well as the machine's 1.12.
#
# The source list is derived from this machine's own apt sources
# (tools/apt_sources.py: same mirrors, trixie suites), and apt runs on a
# private state under .cache/apt-trixie/: the machine's apt lists, cache and
# sources are not touched. Once unpacked, the binary is reused: reruns are
# offline. Prints the binary's path last; fails with a clear message when the
# package cannot be fetched or does not run here.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

DEST=".cache/beanstalkd-1.13"
BIN="$DEST/usr/bin/beanstalkd"

fail() {
    echo "error: cannot get beanstalkd 1.13 (Debian trixie's package): $*" >&2
    echo "       the integration tests need it; fix the cause above, or put a working" >&2
    echo "       beanstalkd 1.13 binary at $ROOT/$BIN" >&2
    exit 1
}

runs() { "$1" -v 2>/dev/null | grep -q '^beanstalkd 1\.13'; }

if [ -x "$BIN" ] && runs "$BIN"; then
    echo "$ROOT/$BIN"
    exit 0
fi

command -v apt-get >/dev/null && command -v dpkg-deb >/dev/null \
    || fail "apt-get and dpkg-deb are needed (a Debian-based machine)"

STATE="$ROOT/.cache/apt-trixie"
rm -rf "$STATE"
mkdir -p "$STATE/parts" "$STATE/lists/partial" "$STATE/cache/archives/partial" "$STATE/prefs" "$STATE/download"
: > "$STATE/sources.list"
.venv/bin/python -m tools.apt_sources "$STATE/parts" >&2 \
    || fail "no trixie source list could be derived from /etc/apt"

# apt drops privileges to _apt for downloads when it runs as root; our private
# directories belong to the caller, so download as the caller.
APT=(
    -o "Dir::Etc::SourceList=$STATE/sources.list"
    -o "Dir::Etc::SourceParts=$STATE/parts"
    -o "Dir::Etc::Preferences=$STATE/prefs/none"
    -o "Dir::Etc::PreferencesParts=$STATE/prefs"
    -o "Dir::State::Lists=$STATE/lists"
    -o "Dir::Cache=$STATE/cache"
    -o "APT::Sandbox::User=$(id -un)"
)
echo "==> fetching beanstalkd 1.13 (apt-get download from trixie, private apt state)" >&2
apt-get -q "${APT[@]}" update >"$STATE/update.log" 2>&1 \
    || { cat "$STATE/update.log" >&2; fail "apt-get update of the trixie lists failed"; }
(cd "$STATE/download" && apt-get -q "${APT[@]}" download beanstalkd >"$STATE/download.log" 2>&1) \
    || { cat "$STATE/download.log" >&2; fail "apt-get download beanstalkd failed"; }
deb="$(ls "$STATE"/download/beanstalkd_*.deb 2>/dev/null | head -n1)"
[ -n "$deb" ] || fail "apt-get download left no beanstalkd_*.deb"

rm -rf "$DEST"
mkdir -p "$DEST"
dpkg-deb -x "$deb" "$DEST" || fail "dpkg-deb -x $deb failed"
cp "$deb" "$DEST/"
if ! out="$("$BIN" -v 2>&1)"; then
    fail "the unpacked $BIN does not run on this machine (it may need a newer libc): $out"
fi
runs "$BIN" || fail "$BIN -v says '$out', not beanstalkd 1.13"
rm -rf "$STATE"
echo "$ROOT/$BIN"
