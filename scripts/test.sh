#!/bin/sh
# test.sh: what `make test` does.  Installs missing packages, builds and
# installs the extension with warnings as errors, starts a throwaway cluster
# with mandant preloaded, runs the pg_regress suite (pgTAP assertions run
# inside it), the isolation specs and the shell tests, stops the cluster and
# prints "N passed, N failed".  Exits non-zero if anything failed.
set -eu

cd "$(dirname "$0")/.."
top=$(pwd)

scripts/install-deps.sh
. scripts/cluster.sh

# Build with the flags CI uses, and install (needs root or sudo).
make -s clean >/dev/null
make -s MANDANT_CFLAGS="-Werror -DUSE_ASSERT_CHECKING"
if [ "$(id -u)" = 0 ]; then
	make -s install >/dev/null
else
	sudo -n make -s install >/dev/null
fi

work=$(mktemp -d /tmp/mandant-test.XXXXXX)
chmod 755 "$work"
give_to_server_user "$work"
datadir=$work/data
sockdir=$work/sock
port=${MANDANT_TEST_PORT:-54329}
logfile=$work/server.log

cleanup() {
	cluster_stop "$datadir"
	rm -rf "$work"
}
trap cleanup EXIT INT TERM

cluster_init "$datadir" "$sockdir" "$port"
cluster_keys "$datadir" "$work/keys" test
as_server_user touch "$logfile"
cluster_start "$datadir" "$logfile"

export PGHOST=$sockdir PGPORT=$port PGUSER=postgres PGDATABASE=postgres

out=$work/out.txt
status=0

# run_suite LABEL COMMAND...: run one suite, keep its output, note failure.
run_suite() {
	label=$1
	shift
	echo "== $label"
	if ! { "$@" 2>&1; echo "exit $?" >"$work/rc"; } | tee -a "$out"; then
		status=1
	fi
	[ "$(cat "$work/rc")" = "exit 0" ] || status=1
}

: >"$out"
# MANDANT_TEST_ONLY=<shell test> runs that one alone (make fuzz).
only=${MANDANT_TEST_ONLY:-}
if [ -z "$only" ]; then
	run_suite "pg_regress (with pgTAP)" make -s installcheck ISOLATION=
	run_suite "isolation" make -s installcheck REGRESS=
fi

for t in test/shell/*.sh; do
	[ -e "$t" ] || continue
	name=$(basename "$t" .sh)
	[ -z "$only" ] || [ "$name" = "$only" ] || continue
	if sh "$t" >"$work/$name.log" 2>&1; then
		echo "test $name ... ok" | tee -a "$out"
		grep '^fuzz: [0-9]* calls\|^fuzz: half\|^base32' "$work/$name.log" | sed 's/^/    /' || true
	else
		echo "test $name ... FAILED" | tee -a "$out"
		sed 's/^/    /' "$work/$name.log"
		status=1
	fi
done

# No input may crash the server: a backend killed by a signal restarts
# every session, so any such line in the server log fails the run.
if grep -E 'terminated by signal|was terminated by exception' "$logfile" >"$work/crashes.txt"; then
	echo "test server_log_has_no_crash ... FAILED" | tee -a "$out"
	sed 's/^/    /' "$work/crashes.txt"
	status=1
else
	echo "test server_log_has_no_crash ... ok" | tee -a "$out"
fi

for diffs in regression.diffs output_iso/regression.diffs; do
	if [ -s "$diffs" ]; then
		echo "== $diffs"
		cat "$diffs"
	fi
done

# pg_regress prints "test x ... ok" (PG 15) or "ok 1 - x" (PG 16); count both.
passed=$(grep -cE '(\.\.\. ok|^ok [0-9]+ +[-+] )' "$out" || true)
failed=$(grep -cE '(\.\.\. FAILED|\.\.\. failed|^not ok [0-9]+ )' "$out" || true)
if [ "$failed" -gt 0 ]; then
	status=1
fi
if [ "$passed" -eq 0 ]; then
	echo "no test ran" >&2
	status=1
fi
echo "$passed passed, $failed failed"
exit $status
