#!/bin/sh
# install-deps.sh: install the Debian packages mandant needs to build, test
# and run (kore for the HTTP gateway; curl and prometheus, for promtool,
# for its tests).  Installs only what is missing; needs root or password-less sudo.
#
#   PG_MAJOR=16 scripts/install-deps.sh    build against another major
#   scripts/install-deps.sh fuzz            also clang and its libFuzzer
#                                           and sanitizer runtimes (make fuzz)
#   scripts/install-deps.sh citus           also what building Citus needs
#                                           (make test-citus)
set -eu

PG_MAJOR=${PG_MAJOR:-15}

packages="make gcc libc6-dev libpq-dev libssl-dev openssl
perl libipc-run-perl
postgresql-$PG_MAJOR
postgresql-client-$PG_MAJOR
postgresql-server-dev-$PG_MAJOR
postgresql-$PG_MAJOR-pgtap
kore curl prometheus"
if [ "${1:-}" = fuzz ]; then
	packages="$packages clang libclang-rt-dev"
fi
if [ "${1:-}" = citus ]; then
	packages="$packages libcurl4-openssl-dev liblz4-dev libzstd-dev libkrb5-dev
libselinux1-dev libxslt1-dev libpam0g-dev flex bison autoconf patch"
fi
# npm for test/http/openapi.sh (Redocly CLI), unless one is on the PATH
# already (NodeSource's nodejs package brings its own npm).
command -v npm >/dev/null 2>&1 || packages="$packages nodejs npm"

missing=""
for p in $packages; do
	if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
		missing="$missing $p"
	fi
done

if [ -z "$missing" ]; then
	exit 0
fi

if [ "$(id -u)" = 0 ]; then
	sudo=""
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
	sudo="sudo -n"
else
	echo "install-deps: missing packages:$missing" >&2
	echo "install-deps: run as root (or with password-less sudo) to install them" >&2
	exit 1
fi

echo "install-deps: installing$missing"
export DEBIAN_FRONTEND=noninteractive
# Another apt or dpkg (unattended-upgrades, a second make) may hold the
# dpkg lock: wait up to two minutes for it rather than fail at once.
lock_wait="-o DPkg::Lock::Timeout=120"
if command -v fuser >/dev/null 2>&1 && fuser /var/lib/dpkg/lock-frontend >/dev/null 2>&1; then
	echo "install-deps: another apt or dpkg holds the dpkg lock; waiting up to 2 minutes"
fi
# shellcheck disable=SC2086
if ! $sudo apt-get install $lock_wait -y -q --no-install-recommends $missing; then
	# shellcheck disable=SC2086
	$sudo apt-get update $lock_wait -q
	# shellcheck disable=SC2086
	$sudo apt-get install $lock_wait -y -q --no-install-recommends $missing
fi
