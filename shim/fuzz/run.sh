#!/bin/sh
# shim/fuzz/run.sh: build the libFuzzer target of the gateway's request
# object (request_fuzz.c, with shim/src/request.c and Kore's own buf.c)
# with Debian's clang, AddressSanitizer and UBSan, and run it for
# FUZZ_SECONDS (default 20).  Needs no database and no Kore process.
# Prints the runs, the corpus and the coverage it reached; a crash, an
# overflow or a failed check prints the input (base64) and fails.
#
#   FUZZ_SECONDS=600 shim/fuzz/run.sh       longer
#   FUZZ_CORPUS=dir shim/fuzz/run.sh        keep the corpus in dir
#   shim/fuzz/run.sh crash-file...          rerun saved inputs only
set -eu

cd "$(dirname "$0")/../.."
seconds=${FUZZ_SECONDS:-20}
features=/usr/share/kore/features

command -v clang >/dev/null 2>&1 ||
	{ echo "request_fuzz: clang is not installed (scripts/install-deps.sh fuzz)" >&2; exit 1; }
[ -f "$features" ] || { echo "request_fuzz: kore is not installed (scripts/install-deps.sh)" >&2; exit 1; }

work=$(mktemp -d /tmp/mandant-request-fuzz.XXXXXX)
trap 'rm -rf "$work"' EXIT INT TERM

# Kore's buf.c is compiled as Kore ships it (its own warnings are not
# ours); the target, its stubs and request.c with warnings as errors.
flags="-g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all"
# shellcheck disable=SC2046
clang $flags -Wall -Wextra -Wmissing-prototypes -Werror -Ishim/src $(cat "$features") \
	-c shim/fuzz/request_fuzz.c -o "$work/request_fuzz.o"
# shellcheck disable=SC2046
clang $flags -Wall -Wextra -Wmissing-prototypes -Werror -Ishim/src $(cat "$features") \
	-c shim/fuzz/stubs.c -o "$work/stubs.o"
# shellcheck disable=SC2046
clang $flags -Wall -Wextra -Wmissing-prototypes -Werror -Ishim/src $(cat "$features") \
	-c shim/src/request.c -o "$work/request.o"
# shellcheck disable=SC2046
clang $flags -D_GNU_SOURCE -I/usr/include/kore $(cat "$features") \
	-c /usr/share/kore/src/buf.c -o "$work/buf.o"
clang $flags -o "$work/request_fuzz" "$work/request_fuzz.o" "$work/stubs.o" \
	"$work/request.o" "$work/buf.o"

if [ $# -gt 0 ]; then
	exec "$work/request_fuzz" "$@"
fi

corpus=${FUZZ_CORPUS:-$work/corpus}
mkdir -p "$corpus" "$work/artifacts"
echo "request_fuzz: ${seconds}s"
rc=0
"$work/request_fuzz" -max_total_time="$seconds" -max_len=4096 -timeout=10 \
	-rss_limit_mb=2048 -print_final_stats=1 -artifact_prefix="$work/artifacts/" \
	"$corpus" >"$work/log" 2>&1 || rc=$?

runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$work/log")
cov=$(grep -E '^#[0-9]+' "$work/log" | tail -1 | sed -n 's/.*cov: \([0-9]*\).*ft: \([0-9]*\).*/\1 edges, \2 features/p')
echo "request_fuzz: ${runs:-?} inputs in ${seconds}s, corpus $(ls "$corpus" | wc -l) inputs, ${cov:-?}"
if [ "$rc" -ne 0 ]; then
	echo "request_fuzz: FAILED (exit $rc)"
	grep -E 'request_fuzz:|ERROR|SUMMARY|runtime error' "$work/log" | head -20
	for a in "$work"/artifacts/*; do
		[ -e "$a" ] || continue
		echo "request_fuzz: input $(basename "$a") (base64): $(base64 -w0 "$a")"
		echo "request_fuzz: reproduce: echo '$(base64 -w0 "$a")' | base64 -d >x; shim/fuzz/run.sh x"
	done
	exit 1
fi
echo "request_fuzz: no crash, no overflow, every object parsed back to its fields"
