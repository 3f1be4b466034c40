#!/bin/sh
# test.sh: what `make test` does.  Installs missing packages, builds and
# installs the extension with warnings as errors, runs every suite with
# PostgreSQL's own test tools, checks that no server log shows a crashed
# backend, and prints "N passed, N failed".  Exits non-zero if anything
# failed.  The suites:
#
#   regress     pg_regress (pgTAP assertions run inside), make installcheck
#               on a throwaway cluster (port 54329)
#   isolation   the isolation specs, on a temporary instance of their own
#               (pg_regress --temp-instance, as `make check` does for contrib)
#   test/t      TAP tests (prove, PostgreSQL::Test::Cluster), each test
#               with clusters it creates
#   test/shell  shell tests, on the throwaway cluster of the regress suite
#   test/http   the HTTP gateway end to end (curl, promtool), each test
#               with a cluster and a gateway of its own
#
# Every server gets the settings of one file, $work/conf/postgresql.conf
# (mandant preloaded, the token keys): pg_regress --temp-config and
# PostgreSQL::Test::Cluster (TEMP_CONFIG) append it to the configuration
# of the instances they create, and the throwaway cluster gets it too.
#
# PostgreSQL refuses to run as root: as root, the tools that create
# instances run as the server's OS user (scripts/cluster.sh), in $work,
# which that user owns.  The isolation output is copied back to where
# `make installcheck` leaves it (output_iso/).
#
#   MANDANT_TEST_ONLY=NAME   one suite alone: regress, isolation, a TAP test
#                            (001_preload or preload), a shell test
#                            (readme; fuzz: fuzz.sh and fuzz_http.sh),
#                            request_fuzz (the libFuzzer target),
#                            http (all HTTP tests) or one (http_outage)
#   FUZZ_SECONDS=N           how long fuzz.sh and fuzz_http.sh run
#   FUZZ_REQUEST_SECONDS=N   how long request_fuzz runs (default 20)
#   PROVE_FLAGS=--verbose    passed to prove
set -eu

cd "$(dirname "$0")/.."
started=$(date +%s)

# since START: seconds elapsed since START (date +%s).
since() {
	echo $(($(date +%s) - $1))
}

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
echo "== build and install: $(since "$started") s"

work=$(mktemp -d /tmp/mandant-test.XXXXXX)
chmod 755 "$work"
give_to_server_user "$work"

cleanup() {
	for d in "${datadir:-}" "$work/regress_instance/data" "$work/isolation_instance/data"; do
		[ -z "$d" ] || [ ! -d "$d" ] || cluster_stop "$d"
	done
	rm -rf "$work"
}
trap cleanup EXIT INT TERM

# The settings of every test server, followed by the key settings that
# cluster_keys appends to "$work/conf/postgresql.conf".
conf=$work/conf/postgresql.conf
mkdir "$work/conf"
cat >"$conf" <<-EOF
	# mandant: test servers (scripts/test.sh)
	shared_preload_libraries = 'mandant'
	max_connections = 60
	password_encryption = 'scram-sha-256'
EOF
give_to_server_user "$work/conf"
cluster_keys "$work/conf" "$work/keys" test

# The shell tests' cluster (set after cluster_keys, which assigns datadir).
datadir=$work/data
sockdir=$work/sock
port=${MANDANT_TEST_PORT:-54329}
logfile=$work/server.log

out=$work/out.txt
status=0
: >"$out"
only=${MANDANT_TEST_ONLY:-}

# wanted NAME...: whether the suite known by any of these names runs.
wanted() {
	[ -z "$only" ] && return 0
	for n in "$@"; do
		[ "$n" = "$only" ] && return 0
	done
	return 1
}

# run_suite LABEL COMMAND...: run one suite, keep its output, note failure.
run_suite() {
	label=$1
	shift
	echo "== $label"
	suite_started=$(date +%s)
	if ! { "$@" 2>&1; echo "exit $?" >"$work/rc"; } | tee -a "$out"; then
		status=1
	fi
	[ "$(cat "$work/rc")" = "exit 0" ] || status=1
	echo "== $label: $(since "$suite_started") s"
}

# pg_regress_temp NAME COPY_TO MAKE_ARGUMENT...: make installcheck as the
# server's OS user with pg_regress on a temporary instance in
# $work/NAME_instance, its output in $work/NAME, copied to COPY_TO.
pg_regress_temp() {
	name=$1 copy_to=$2
	shift 2
	as_server_user mkdir "$work/$name"
	rc=0
	as_server_user env PATH="$PATH" make -s installcheck "$@" ENCODING=UTF8 NO_LOCALE=1 \
		EXTRA_REGRESS_OPTS="--temp-instance=$work/${name}_instance --temp-config=$conf --outputdir=$work/$name" || rc=$?
	mkdir -p "$copy_to"
	cp -R "$work/$name/." "$copy_to"
	return "$rc"
}

# shared_cluster: start the cluster of the regress suite and the shell
# tests, once.
shared_cluster() {
	[ ! -f "$logfile" ] || return 0
	cluster_init "$datadir" "$sockdir" "$port"
	as_server_user sh -c "cat '$conf' >> '$datadir/postgresql.conf'"
	as_server_user touch "$logfile"
	cluster_start "$datadir" "$logfile"
	export PGHOST="$sockdir" PGPORT="$port" PGUSER=postgres PGDATABASE=postgres
}

# The regress suite stays on the shared cluster: test/sql/tokens.sql reads
# the test keys as ../keys/ from the data directory, and pg_regress
# --temp-instance recreates the directory that would hold them.
if wanted regress; then
	shared_cluster
	run_suite "pg_regress (with pgTAP)" make -s installcheck ISOLATION=
fi
if wanted isolation; then
	run_suite "isolation" pg_regress_temp isolation output_iso REGRESS=
fi

# TAP tests: prove with the modules and pg_regress of postgresql-server-dev
# (PGXS's prove_installcheck, with TESTDIR in $work), as the server's OS
# user: PostgreSQL::Test::Cluster runs initdb and pg_ctl as the invoking
# user.  Their logs go to $work/tap/tmp_check/log.
pgxs_src=$(dirname "$(dirname "$(pg_config --pgxs)")")
tap=$work/tap
as_server_user mkdir "$tap"
tap_started=$(date +%s)
for t in test/t/*.pl; do
	[ -e "$t" ] || continue
	name=$(basename "$t" .pl)
	wanted "$name" "${name#*_}" || continue
	[ -n "${tap_begun:-}" ] || { echo "== TAP (prove)"; tap_begun=1; }
	t0=$(date +%s)
	# shellcheck disable=SC2086
	if as_server_user env TESTDIR="$tap" PATH="$PATH" TEMP_CONFIG="$conf" \
		PG_REGRESS="$pgxs_src/test/regress/pg_regress" \
		prove -I "$pgxs_src/test/perl" ${PROVE_FLAGS:-} "$t" >"$work/$name.log" 2>&1; then
		echo "test $name ... ok  $(since "$t0") s" | tee -a "$out"
		[ -z "${PROVE_FLAGS:-}" ] || sed 's/^/    /' "$work/$name.log"
	else
		echo "test $name ... FAILED  $(since "$t0") s" | tee -a "$out"
		sed 's/^/    /' "$work/$name.log" "$tap/tmp_check/log/regress_log_$name"
		status=1
	fi
done
[ -z "${tap_begun:-}" ] || echo "== TAP (prove): $(since "$tap_started") s"

# The libFuzzer target of the gateway's request object (shim/fuzz/run.sh),
# when clang is installed (make fuzz installs it and runs it longer).
if wanted request_fuzz; then
	t0=$(date +%s)
	if ! command -v clang >/dev/null 2>&1; then
		echo "test request_fuzz ... skipped: clang is not installed (make fuzz installs it)"
	elif FUZZ_SECONDS=${FUZZ_REQUEST_SECONDS:-20} shim/fuzz/run.sh >"$work/request_fuzz.log" 2>&1; then
		echo "test request_fuzz ... ok  $(since "$t0") s" | tee -a "$out"
		grep '^request_fuzz: [0-9]* inputs' "$work/request_fuzz.log" | sed 's/^/    /' || true
	else
		echo "test request_fuzz ... FAILED  $(since "$t0") s" | tee -a "$out"
		sed 's/^/    /' "$work/request_fuzz.log"
		status=1
	fi
fi

# Shell tests: on the shared cluster, started for them.  fuzz_http.sh,
# http_call's random requests at length, runs only when asked
# (MANDANT_TEST_ONLY=fuzz, make fuzz): make test has test/sql/http_random.sql.
shell_started=$(date +%s)
for t in test/shell/*.sh; do
	[ -e "$t" ] || continue
	name=$(basename "$t" .sh)
	wanted "$name" "${name%%_*}" || continue
	[ "$name" != fuzz_http ] || [ -n "$only" ] || continue
	[ -n "${shell_begun:-}" ] || { echo "== shell tests"; shell_begun=1; }
	shared_cluster
	t0=$(date +%s)
	if sh "$t" >"$work/$name.log" 2>&1; then
		echo "test $name ... ok  $(since "$t0") s" | tee -a "$out"
		grep '^fuzz: [0-9]* calls\|^fuzz: half\|^base32\|^fuzz_http: [0-9]* requests\|^fuzz_http: answers' \
			"$work/$name.log" | sed 's/^/    /' || true
	else
		echo "test $name ... FAILED  $(since "$t0") s" | tee -a "$out"
		sed 's/^/    /' "$work/$name.log"
		status=1
	fi
done
[ -z "${shell_begun:-}" ] || echo "== shell tests: $(since "$shell_started") s"

# HTTP tests: the gateway (shim/run, Kore) end to end, each test file with
# a cluster and a gateway of its own (test/http/lib.sh); their TAP lines
# are counted one by one.
http_started=$(date +%s)
for t in test/http/*.sh; do
	[ -e "$t" ] || continue
	name=$(basename "$t" .sh)
	[ "$name" != lib ] || continue
	wanted http "http_$name" || continue
	[ -n "${http_begun:-}" ] || { echo "== http (gateway)"; http_begun=1; }
	t0=$(date +%s)
	rc=0
	MANDANT_TEST_CONF=$conf MANDANT_TEST_WORK=$work sh "$t" >"$work/http_$name.log" 2>&1 || rc=$?
	grep -E '^(not )?ok [0-9]+ ' "$work/http_$name.log" >>"$out" || true
	npass=$(grep -cE '^ok [0-9]+ ' "$work/http_$name.log" || true)
	nfail=$(grep -cE '^not ok [0-9]+ ' "$work/http_$name.log" || true)
	echo "http/$name: $npass passed, $nfail failed  $(since "$t0") s"
	if [ "$rc" -ne 0 ] || [ "$nfail" -gt 0 ]; then
		[ "$nfail" -gt 0 ] || echo "test http_$name ... FAILED" | tee -a "$out"
		sed 's/^/    /' "$work/http_$name.log"
		status=1
	fi
done
[ -z "${http_begun:-}" ] || echo "== http (gateway): $(since "$http_started") s"

# No input may crash the server: a backend killed by a signal restarts
# every session, so any such line in a server log fails the run: the
# shell tests' cluster, pg_regress's instances (log/ of their output) and
# the TAP tests' clusters.
logs=$(find "$work" -path "$work/tap/tmp_check/log/*.log" ! -name 'regress_log_*' -o \
	-path "$work/*/log/postmaster.log" -o -path "$work/http_*.server.log" -o -path "$logfile")
# shellcheck disable=SC2086
if [ -n "$logs" ] && grep -HE 'terminated by signal|was terminated by exception' $logs >"$work/crashes.txt"; then
	echo "test server_log_has_no_crash ... FAILED" | tee -a "$out"
	sed 's/^/    /' "$work/crashes.txt"
	status=1
else
	echo "test server_log_has_no_crash ... ok" | tee -a "$out"
fi

# Secrets stay out of the server log: the suites call login, service_token
# and the password functions with literal (wrong) secrets, and mandant keeps
# the STATEMENT line of their failures out of the log.
# shellcheck disable=SC2086
if [ -n "$logs" ] && grep -HE 'STATEMENT: .*mandant\.(login|identity_login|service_token|change_password|reset_password|create_user|refresh|logout|http_call)\(' $logs >"$work/secrets.txt"; then
	echo "test server_log_has_no_secret ... FAILED" | tee -a "$out"
	sed 's/^/    /' "$work/secrets.txt" | head -20
	status=1
else
	echo "test server_log_has_no_secret ... ok" | tee -a "$out"
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
echo "== total: $(since "$started") s"
echo "$passed passed, $failed failed"
exit $status
