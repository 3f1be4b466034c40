#!/bin/sh
# citus.sh: what `make test-citus` does.  Builds Citus from the vendored
# source once, installs it and mandant, starts a cluster of one coordinator
# and two workers, runs the distributed suite (test/citus/*.sh) against it,
# stops the three nodes and prints "N passed, N failed".
#
#   scripts/citus.sh          everything above
#   scripts/citus.sh build    only build Citus into the cache (no install,
#                             no root needed when the cache is writable)
#   scripts/citus.sh start DIR  build, install and start the three nodes
#                             in DIR (a new directory) and leave them
#                             running; DIR/env.sh sets MANDANT_CITUS_* for
#                             test/citus/*.sh and bench/citus.sh
#   scripts/citus.sh stop DIR   stop the nodes that start left in DIR
#
# The build: the tarball and patch of $MANDANT_CITUS_VENDOR (default
# ../shared/vendor beside the checkout, as issue 16 names it) are unpacked,
# patched, configured and compiled with `nice -n 19` in a cache directory
# outside the repository, named after the Citus version, the PostgreSQL
# major and a hash of tarball and patch, so that every clone on the machine
# and every later run reuses it (a tree without its .built mark, from a
# build that failed or was interrupted, is built again):
#
#   $MANDANT_CITUS_CACHE/citus-13.2.2-pg15-<hash>/   (the build tree)
#
# MANDANT_CITUS_CACHE defaults to /var/cache/mandant as root and to
# ~/.cache/mandant otherwise.  Concurrent runs wait for each other on a
# lock file beside the tree.  The build's log is build.log in the tree.
#
# The test files are TAP shell scripts (test/citus/lib.sh has their
# helpers).  A file with a line "# pending: ..." describes behaviour that
# is not built yet: it runs only with MANDANT_CITUS_ALL=1.
#
#   MANDANT_CITUS_ALL=1       also run the pending files
#   MANDANT_CITUS_ONLY=NAME   run test/citus/NAME.sh alone (pending or not)
#   MANDANT_CITUS_KEEP=1      leave the work directory (logs) behind
set -eu

cd "$(dirname "$0")/.."
top=$(pwd)
started=$(date +%s)

# since START: seconds elapsed since START (date +%s).
since() {
	echo $(($(date +%s) - $1))
}

# as_root COMMAND...: run a command as root (directly, or with sudo -n).
as_root() {
	if [ "$(id -u)" = 0 ]; then
		"$@"
	else
		sudo -n "$@"
	fi
}

vendor=${MANDANT_CITUS_VENDOR:-$top/../shared/vendor}
[ -d "$vendor" ] || vendor=/work/shared/vendor
tarball=$(ls "$vendor"/citus-*.tar.gz 2>/dev/null | tail -1)
[ -n "$tarball" ] || { echo "citus: no citus-*.tar.gz in $vendor (MANDANT_CITUS_VENDOR)" >&2; exit 1; }
citus_version=$(basename "$tarball" .tar.gz)
citus_version=${citus_version#citus-}
patches=$(ls "$vendor"/citus-"$citus_version"-*.patch 2>/dev/null || true)

mode=${1:-all}
if [ "$mode" = stop ]; then
	. scripts/cluster.sh
	for n in coordinator worker1 worker2; do
		[ ! -f "${2:?citus.sh stop DIR}/$n/postmaster.pid" ] || cluster_stop "$2/$n"
	done
	exit 0
fi
if [ "$mode" = build ]; then
	command -v pg_config >/dev/null 2>&1 || { echo "citus: pg_config is missing: run scripts/install-deps.sh citus" >&2; exit 1; }
else
	scripts/install-deps.sh citus
fi
echo "== dependencies: $(since "$started") s"

pg_major=$(pg_config --version | sed 's/^PostgreSQL \([0-9]*\).*/\1/')
hash=$(cat "$tarball" $patches | sha256sum | cut -c1-12)
if [ "$(id -u)" = 0 ]; then
	cache_root=${MANDANT_CITUS_CACHE:-/var/cache/mandant}
else
	cache_root=${MANDANT_CITUS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/mandant}
fi
build=$cache_root/citus-$citus_version-pg$pg_major-$hash
mkdir -p "$cache_root"

# build_citus: unpack, patch, configure and compile in $build, which is
# complete when it holds .built (configure writes absolute paths into the
# tree, so it is built where it stays).  Runs with the cache's lock held.
build_citus() {
	if [ -f "$build/.built" ]; then
		echo "citus: reusing the build in $build"
		return 0
	fi
	echo "citus: building $citus_version for PostgreSQL $pg_major in $build (log: $build/build.log)"
	rm -rf "$build"
	mkdir -p "$build"
	log=$build/build.log
	t0=$(date +%s)
	tar -xzf "$tarball" -C "$build" --strip-components=1
	for p in $patches; do
		patch -s -p1 -d "$build" <"$p"
	done
	echo "citus: unpack and patch: $(since "$t0") s"
	t0=$(date +%s)
	if ! (cd "$build" && nice -n 19 ./configure PG_CONFIG="$(command -v pg_config)") >"$log" 2>&1; then
		tail -30 "$log" >&2
		echo "citus: configure failed (log: $log)" >&2
		return 1
	fi
	echo "citus: configure: $(since "$t0") s"
	t0=$(date +%s)
	jobs=$(nproc 2>/dev/null || echo 2)
	if ! (cd "$build" && nice -n 19 make -j"$jobs" -s) >>"$log" 2>&1; then
		tail -30 "$log" >&2
		echo "citus: make failed (log: $log)" >&2
		return 1
	fi
	echo "citus: make -j$jobs: $(since "$t0") s"
	touch "$build/.built"
}

(
	flock 9
	build_citus
) 9>"$build.lock"
echo "== citus build: $(since "$started") s"
[ "$mode" != build ] || exit 0

# Install Citus (the files of its `make install`, into PostgreSQL's
# directories, shared by every clone on the machine) unless the installed
# copy is this build already, then build and install mandant with the flags
# of make test.
t0=$(date +%s)
distributed=$build/src/backend/distributed
if cmp -s "$distributed/citus.so" "$(pg_config --pkglibdir)/citus.so" &&
	cmp -s "$distributed/citus.control" "$(pg_config --sharedir)/extension/citus.control"; then
	echo "citus: installed already"
else
	echo "citus: installing"
	as_root make -C "$build" -s install >"$build/install.log" 2>&1 ||
		{ tail -30 "$build/install.log" >&2; exit 1; }
fi
make -s clean >/dev/null
make -s MANDANT_CFLAGS="-Werror -DUSE_ASSERT_CHECKING"
as_root make -s install >/dev/null
echo "== install: $(since "$t0") s"

. scripts/cluster.sh

if [ "$mode" = start ]; then
	work=${2:?citus.sh start DIR}
	mkdir "$work"
else
	work=$(mktemp -d /tmp/mandant-citus.XXXXXX)
fi
chmod 755 "$work"
give_to_server_user "$work"
nodes="coordinator worker1 worker2"

cleanup() {
	for n in $nodes; do
		[ ! -d "$work/$n" ] || cluster_stop "$work/$n"
	done
	if [ -n "${MANDANT_CITUS_KEEP:-}" ]; then
		echo "citus: work directory kept: $work"
	else
		rm -rf "$work"
	fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# free_port: a TCP port on 127.0.0.1 that nothing listens on now (the nodes
# listen on their socket only, but keep clear of ports in use anyway).
free_port() {
	perl -MIO::Socket::INET -e 'print IO::Socket::INET->new(Listen => 1,
		LocalAddr => "127.0.0.1", LocalPort => 0, ReuseAddr => 1)->sockport'
}

# The settings of every node: those of the test servers of make test
# (scripts/test.sh), with Citus loaded first, and the same keys everywhere.
# Nodes reach each other through the common socket directory, so Citus's
# connections use peer/trust authentication as the superuser postgres.
sock=$work/sock
conf=$work/conf/postgresql.conf
mkdir "$work/conf"
cat >"$conf" <<-EOF
	# mandant: Citus test nodes (scripts/citus.sh)
	shared_preload_libraries = 'citus,mandant'
	max_connections = 100
	max_worker_processes = 16
	password_encryption = 'scram-sha-256'
	citus.local_hostname = '$sock'
	wal_level = logical
EOF
give_to_server_user "$work/conf"
cluster_keys "$work/conf" "$work/keys" test

t0=$(date +%s)
for n in $nodes; do
	port=$(free_port)
	cluster_init "$work/$n" "$sock" "$port"
	as_server_user sh -c "cat '$conf' >> '$work/$n/postgresql.conf'"
	# the workers take the context that the coordinator signs for them
	case $n in worker*) as_server_user sh -c "echo 'mandant.accept_context_envelopes = on' >> '$work/$n/postgresql.conf'" ;; esac
	as_server_user touch "$work/$n.log"
	cluster_start "$work/$n" "$work/$n.log"
	eval "port_$n=$port"
done
echo "citus: coordinator on port $port_coordinator, workers on $port_worker1 and $port_worker2 (socket $sock)"

# The database of the suite, with both extensions on every node, and the
# workers registered with the coordinator.
db=mandant_citus
for n in $nodes; do
	eval "p=\$port_$n"
	psql -X -q -v ON_ERROR_STOP=1 -h "$sock" -p "$p" -U postgres -d postgres \
		-c "CREATE DATABASE $db" >/dev/null
	psql -X -q -v ON_ERROR_STOP=1 -h "$sock" -p "$p" -U postgres -d "$db" \
		-c "SET client_min_messages = warning" \
		-c "CREATE EXTENSION citus" -c "CREATE EXTENSION mandant CASCADE" >/dev/null
done
psql -X -q -v ON_ERROR_STOP=1 -h "$sock" -p "$port_coordinator" -U postgres -d "$db" \
	-c "SELECT citus_set_coordinator_host('$sock', $port_coordinator)" \
	-c "SELECT citus_add_node('$sock', $port_worker1)" \
	-c "SELECT citus_add_node('$sock', $port_worker2)" >/dev/null
echo "== cluster: $(since "$t0") s"
if [ "$mode" = start ]; then
	cat >"$work/env.sh" <<-EOF
		export MANDANT_CITUS_SOCK='$sock' MANDANT_CITUS_DB='$db' MANDANT_CITUS_WORK='$work'
		export MANDANT_CITUS_COORDINATOR=$port_coordinator MANDANT_CITUS_WORKERS='$port_worker1 $port_worker2'
	EOF
	echo "citus: running; . $work/env.sh, and scripts/citus.sh stop $work"
	trap - EXIT
	exit 0
fi

# The suite: every test/citus/*.sh but lib.sh, the files that must pass
# first, then the pending ones when asked; each prints TAP lines, counted
# one by one.
out=$work/out.txt
: >"$out"
status=0
export MANDANT_CITUS_SOCK="$sock" MANDANT_CITUS_DB="$db" MANDANT_CITUS_WORK="$work"
export MANDANT_CITUS_COORDINATOR="$port_coordinator"
export MANDANT_CITUS_WORKERS="$port_worker1 $port_worker2"
files=""
for t in test/citus/*.sh; do
	[ "$(basename "$t")" != lib.sh ] && ! grep -q '^# pending:' "$t" && files="$files $t"
done
for t in test/citus/*.sh; do
	grep -q '^# pending:' "$t" && files="$files $t"
done
for t in $files; do
	name=$(basename "$t" .sh)
	if [ -n "${MANDANT_CITUS_ONLY:-}" ]; then
		[ "$name" = "$MANDANT_CITUS_ONLY" ] || continue
	elif grep -q '^# pending:' "$t" && [ -z "${MANDANT_CITUS_ALL:-}" ]; then
		echo "citus/$name: skipped, pending ($(sed -n 's/^# pending: //p' "$t" | head -1)); MANDANT_CITUS_ALL=1 runs it"
		continue
	fi
	t0=$(date +%s)
	rc=0
	sh "$t" >"$work/$name.out" 2>&1 || rc=$?
	grep -E '^(not )?ok [0-9]+ ' "$work/$name.out" >>"$out" || true
	npass=$(grep -cE '^ok [0-9]+ ' "$work/$name.out" || true)
	nfail=$(grep -cE '^not ok [0-9]+ ' "$work/$name.out" || true)
	echo "citus/$name: $npass passed, $nfail failed  $(since "$t0") s"
	if [ "$rc" -ne 0 ] || [ "$nfail" -gt 0 ]; then
		[ "$nfail" -gt 0 ] || echo "not ok - citus/$name exited with $rc" | tee -a "$out"
		sed 's/^/    /' "$work/$name.out"
		status=1
	fi
done

# No node may have crashed.
if grep -HE 'terminated by signal|was terminated by exception' "$work"/*.log >"$work/crashes.txt"; then
	echo "not ok - a node's server log shows a crashed backend" | tee -a "$out"
	sed 's/^/    /' "$work/crashes.txt"
	status=1
fi

passed=$(grep -cE '^ok [0-9]+ ' "$out" || true)
failed=$(grep -cE '^not ok' "$out" || true)
[ "$failed" -eq 0 ] || status=1
if [ "$passed" -eq 0 ]; then
	echo "no test ran" >&2
	status=1
fi
echo "== total: $(since "$started") s"
echo "$passed passed, $failed failed"
exit $status
