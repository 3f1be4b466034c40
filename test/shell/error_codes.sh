#!/bin/sh
# error_codes.sh: mandant's SQLSTATEs of class MD are one contract, written
# down twice: the table MANDANT_ERROR_CODES in extension/mandant.h (from
# which the C code and the gateway take them) and the table under "Errors"
# in README.md.  This test needs no server.  It fails, naming the code, when
#   - sql/mandant/*.sql or extension/*.c raise a code that is not in the
#     table of mandant.h (SQL: ERRCODE = 'MDxxx' or RAISE SQLSTATE 'MDxxx';
#     C: ERRCODE_MANDANT_<name>, resolved through the table; a literal
#     MAKE_SQLSTATE('M','D',...) outside the table is refused outright),
#   - the table of mandant.h has a code that nothing raises, or one code
#     or name twice,
#   - mandant.h and README.md differ in a code, its HTTP status or its
#     HTTP error code.
set -eu
cd "$(dirname "$0")/../.."

work=$(mktemp -d /tmp/mandant-error-codes.XXXXXX)
trap 'rm -rf "$work"' EXIT

failures=0
# fail MESSAGE: note one failure.
fail() {
	echo "FAIL: $*"
	failures=$((failures + 1))
}

# The table of mandant.h, one "MD001 TENANT_REQUIRED 400 TENANT_REQUIRED"
# (code, C name, HTTP status, HTTP code) a line: the X(...) rows of the
# backslash-continued #define MANDANT_ERROR_CODES(X), between comments.
awk -v q="'" '
	BEGIN { ch = q "[A-Z0-9]" q ","; row = "^X\\([A-Z0-9_]+," ch ch ch ch ch "[0-9]+,\"[A-Z0-9_]+\"\\)$" }
	/^#define MANDANT_ERROR_CODES\(X\)/ { inside = 1; next }
	inside {
		line = $0
		more = line ~ /\\[ \t]*$/
		gsub(/\/\*.*\*\//, "", line)
		gsub(/[ \t\\]/, "", line)
		if (line != "") {
			if (line !~ row) {
				print "unreadable row of MANDANT_ERROR_CODES: " $0 > "/dev/stderr"
				exit 1
			}
			gsub(/^X\(|\)$|"/, "", line)
			gsub(q, "", line)
			n = split(line, f, ",")
			print f[2] f[3] f[4] f[5] f[6], f[1], f[7], f[8]
		}
		if (!more)
			exit
	}
' extension/mandant.h >"$work/header"
[ -s "$work/header" ] || { echo "FAIL: no MANDANT_ERROR_CODES table in extension/mandant.h"; exit 1; }

# The MD rows of README's "Errors" section, one "MD051 - 401 TOKEN_INVALID"
# a line; a row may list several codes, with as many HTTP codes after one
# status ("| MD051, MD052 | ... | 401 TOKEN_INVALID, TOKEN_EXPIRED |").
awk -F'|' '
	/^## / { inside = ($0 == "## Errors") }
	inside && $2 ~ /^ *MD[0-9]/ {
		ncodes = split($2, codes, ",")
		nnames = split($(NF - 1), names, ",")
		if (ncodes != nnames) {
			print "README row lists " ncodes " codes and " nnames " HTTP codes: " $0 > "/dev/stderr"
			exit 1
		}
		status = ""
		for (i = 1; i <= ncodes; i++) {
			code = codes[i]
			gsub(/[ `]/, "", code)
			name = names[i]
			sub(/^ +/, "", name)
			sub(/ +$/, "", name)
			if (name ~ /^[0-9]+ /) {
				status = name
				sub(/ .*/, "", status)
				sub(/^[0-9]+ +/, "", name)
			}
			print code, "-", status, name
		}
	}
' README.md >"$work/readme"
[ -s "$work/readme" ] || { echo "FAIL: no MD rows under \"## Errors\" in README.md"; exit 1; }

# Codes raised by the SQL, one "MD020 sql/mandant/85_config.sql:123" a line.
for f in sql/mandant/*.sql; do
	awk -v file="$f" -v q="'" '
		BEGIN { raise = "(ERRCODE[ \t]*:?=[ \t]*|RAISE[ \t]+SQLSTATE[ \t]+)" q "MD[0-9A-Z]+" q }
		{
			line = toupper($0)
			while (match(line, raise)) {
				hit = substr(line, RSTART, RLENGTH)
				sub("^[^" q "]*" q, "", hit)
				sub(q "$", "", hit)
				print hit, file ":" NR
				line = substr(line, RSTART + RLENGTH)
			}
		}
	' "$f"
done >"$work/raised"

# Codes raised by the C code: every ERRCODE_MANDANT_<name> an extension/*.c
# file uses, resolved through the table.
for f in extension/*.c; do
	awk -v file="$f" '
		{
			line = $0
			while (match(line, /ERRCODE_MANDANT_[A-Z0-9_]+/)) {
				print substr(line, RSTART + 16, RLENGTH - 16), file ":" NR
				line = substr(line, RSTART + RLENGTH)
			}
		}
	' "$f"
done >"$work/c_names"
while read -r name where; do
	code=$(awk -v name="$name" '$2 == name { print $1 }' "$work/header")
	if [ -z "$code" ]; then
		fail "$where uses ERRCODE_MANDANT_$name, which is not in the table of extension/mandant.h"
	else
		echo "$code $where" >>"$work/raised"
	fi
done <"$work/c_names"

# A class MD code written out in C bypasses the table.
if grep -n "MAKE_SQLSTATE *( *'M' *, *'D'" extension/*.c extension/*.h >"$work/literal"; then
	while read -r hit; do
		fail "${hit%%:*}:$(echo "$hit" | cut -d: -f2) writes an MD code out; use an ERRCODE_MANDANT_* constant of the table in extension/mandant.h"
	done <"$work/literal"
fi

# Raised but not in the table.
while read -r code where; do
	grep -q "^$code " "$work/header" ||
		fail "$where raises $code, which is not in the table of extension/mandant.h"
done <"$work/raised"

# In the table: once, raised somewhere, and the same in README.
for dup in $(cut -d' ' -f1 "$work/header" | sort | uniq -d) $(cut -d' ' -f2 "$work/header" | sort | uniq -d); do
	fail "$dup is in the table of extension/mandant.h more than once"
done
while read -r code name status http; do
	grep -q "^$code " "$work/raised" ||
		fail "$code ($name) is in the table of extension/mandant.h, but neither sql/mandant/ nor extension/ raises it"
	readme=$(awk -v code="$code" '$1 == code { print $3, $4 }' "$work/readme")
	if [ -z "$readme" ]; then
		fail "$code ($status $http) is in extension/mandant.h but not in README.md's table of errors"
	elif [ "$readme" != "$status $http" ]; then
		fail "$code is $status $http in extension/mandant.h but $readme in README.md"
	fi
done <"$work/header"
while read -r code _ status http; do
	grep -q "^$code " "$work/header" ||
		fail "$code ($status $http) is in README.md's table of errors but not in extension/mandant.h"
done <"$work/readme"

echo "error codes: $(wc -l <"$work/header") in extension/mandant.h, $(wc -l <"$work/readme") in README.md," \
	"$(cut -d' ' -f1 "$work/raised" | sort -u | wc -l) raised ($(wc -l <"$work/raised") places)"
if [ "$failures" -gt 0 ]; then
	echo "$failures failures"
	exit 1
fi
echo "every code raised is in the table, every code in the table is raised, README.md agrees"
