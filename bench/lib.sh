# lib.sh: what the benchmarks share; sourced by bench/*.sh.
#
# They run against the cluster of `make run` (started if needed), each in a
# scratch database it drops at the end, and compare variants interleaved,
# BENCH_ROUNDS times each for BENCH_SECONDS, reporting the median TPS.
# Single-client runs are bound by fsync; BENCH_SYNCHRONOUS_COMMIT=off runs
# every session without waiting for it, which shows the CPU cost alone.

cd "$(dirname "$0")/.."
seconds=${BENCH_SECONDS:-10}
rounds=${BENCH_ROUNDS:-3}
clients=${BENCH_CLIENTS:-"1 8"}
port=${PGPORT:-5433}
sockdir=${MANDANT_RUN_DIR:-$(pwd)/.run}
[ ${#sockdir} -gt 80 ] && sockdir=/tmp/mandant-run-$(id -u)-$port
. scripts/cluster.sh
PGOPTIONS="${PGOPTIONS:-} -c synchronous_commit=${BENCH_SYNCHRONOUS_COMMIT:-on}"
export PGOPTIONS

# su_psql runs psql as the cluster's superuser over the private socket.
su_psql() {
	psql -X -q -v ON_ERROR_STOP=1 -h "$sockdir" -p "$port" -U postgres "$@"
}

# bench_setup DB: a scratch database and work directory, removed on exit.
bench_setup() {
	bench_db=$1
	work=$(mktemp -d /tmp/mandant-bench.XXXXXX)
	trap 'su_psql -d postgres -c "DROP DATABASE IF EXISTS $bench_db WITH (FORCE)" >/dev/null 2>&1; rm -rf "$work"' EXIT
	su_psql -d postgres -c "DROP DATABASE IF EXISTS $bench_db WITH (FORCE)" -c "CREATE DATABASE $bench_db" 2>/dev/null
}

# tps_of CLIENTS SCRIPT [ROLE]: one pgbench run, prints its TPS.
tps_of() {
	pgbench -n -M prepared -T "$seconds" -c "$1" -j "$1" -h "$sockdir" -p "$port" \
		-U "${3:-postgres}" -f "$work/$2.sql" "$bench_db" 2>/dev/null |
		sed -n 's/^tps = \([0-9.]*\).*/\1/p'
}

median() {
	sort -n | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

server_version() {
	su_psql -d "$bench_db" -Atc 'SHOW server_version' | cut -d' ' -f1
}

# compare WORKLOAD ROLE: runs the scripts $WORKLOAD-<variant> for the three
# variants in $variants (a = baseline, b = mandant, c = the alternative)
# interleaved, for every client count, and prints the median TPS of each
# with b/a, c/a, b/c and, when $show_overhead is set, "ovh": mandant's
# overhead as a fraction of the alternative's, (1 - b/a) / (1 - c/a), and
# "b/a rounds": the lowest and highest b/a of the single rounds (a and b
# run back to back in each round), the spread behind the median.
compare() {
	workload=$1 role=$2
	# shellcheck disable=SC2086
	set -- $variants
	printf '%-7s %-7s %11s %11s %11s %7s %7s %7s %7s  %s\n' "$workload" clients "a $1" "b $2" "c $3" "b/a" "c/a" "b/c" "ovh" "b/a rounds"
	for c in $clients; do
		for v in $variants; do
			: >"$work/$v.tps"
		done
		r=0
		while [ "$r" -lt "$rounds" ]; do
			for v in $variants; do
				tps_of "$c" "$workload-$v" "$role" >>"$work/$v.tps"
			done
			r=$((r + 1))
		done
		a=$(median <"$work/$1.tps")
		b=$(median <"$work/$2.tps")
		h=$(median <"$work/$3.tps")
		spread=$(paste "$work/$1.tps" "$work/$2.tps" | awk '$1 > 0 { r = $2 / $1
			if (n++ == 0 || r < lo) lo = r; if (n == 1 || r > hi) hi = r }
			END { if (n) printf "%.3f-%.3f", lo, hi; else print "-" }')
		awk -v w="$workload" -v c="$c" -v a="$a" -v b="$b" -v h="$h" -v s="$spread" -v show="${show_overhead:-}" 'BEGIN {
			ovh = (show != "" && h < a) ? sprintf("%7.2f", (1 - b / a) / (1 - h / a)) : "      -"
			printf "%-7s %-7s %11.1f %11.1f %11.1f %7.3f %7.3f %7.3f %s  %s\n", w, c, a, b, h, b / a, h / a, b / h, ovh, s
		}'
	done
}
