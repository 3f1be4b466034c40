#!/bin/sh
# readme.sh: the tours run as printed.  On a fresh database "mandant",
# loaded the way `make run` loads it (scripts/run.sh demo), it runs the
# tour `make run` prints (scripts/run.sh tour), then every ```sql block of
# README.md in order.  A statement may fail only where the text says so
# with "-- refused: CODE", and then with exactly that SQLSTATE; a warning,
# an unannounced error or a psql error fails the test.
#
# README's convention: the first line of every ```sql block is either
#   -- as ROLE ...    a session of its own as ROLE runs the block
#   -- excerpt ...    shown only (placeholders, another server), not run
# and a block that starts with neither fails the test.  In the printed
# tour, an indented "psql ... -U ROLE" line opens a session as ROLE and the
# indented paragraphs that follow it are typed into that session; indented
# "curl ..." and "NAME=$(...)" lines are shell, run in order against a
# gateway of the test's own (shim/run): each curl answers the envelope of
# a success, or of the error "# refused: CODE" names, or writes its -o file.
#
# Needs the test cluster of scripts/test.sh (PGHOST, PGPORT, PGUSER a
# superuser); drops the database and the demo's roles afterwards.
set -eu
cd "$(dirname "$0")/../.."
. scripts/cluster.sh

work=$(mktemp -d /tmp/mandant-readme.XXXXXX)
db=mandant
status=0

su_psql() {
	PGOPTIONS="-c client_min_messages=warning" psql -X -q -v ON_ERROR_STOP=1 "$@"
}

# cleanup removes what the tours created: roles are cluster-wide.
cleanup() {
	su_psql -d postgres -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" || true
	[ -z "${gw_pid:-}" ] || { kill -TERM "$gw_pid" 2>/dev/null; wait "$gw_pid" 2>/dev/null; } || true
	for role in mandant_demo_app mandant_demo_admin mandant_demo_owner mandant_demo_gateway; do
		su_psql -d postgres -c "DROP ROLE IF EXISTS $role" || true
	done
	rm -rf "$work"
}
trap cleanup EXIT INT TERM

# The README names the port as $PGPORT, whose default make run chooses.
if grep -n -- '-p 5433' README.md; then
	echo "README.md: name the port as \"\${PGPORT:-5433}\", not 5433"
	status=1
fi

# A fresh demo database, as make run builds it.
su_psql -d postgres -c "DROP DATABASE IF EXISTS $db WITH (FORCE)"
MANDANT_RUN_DIR=$work/run scripts/run.sh demo

# run_session FILE ROLE WHERE: runs FILE in one psql session as ROLE; the
# session's errors must be the "-- refused: CODE" marks of FILE, in order.
run_session() {
	file=$1 role=$2 where=$3
	expected=$(grep -o 'refused: [0-9A-Z]\{5\}' "$file" | cut -c10- | tr '\n' ' ')
	psql -X -q -v VERBOSITY=verbose -U "$role" -d "$db" -f "$file" >"$file.out" 2>"$file.err" || true
	actual=$(sed -n 's/^psql:[^ ]*: ERROR:  \([0-9A-Z]\{5\}\): .*/\1/p' "$file.err" | tr '\n' ' ')
	unexpected=$(grep '^psql:' "$file.err" | grep -v ': ERROR:  [0-9A-Z]\{5\}: \|: NOTICE:  ' || true)
	if [ "$expected" = "$actual" ] && [ -z "$unexpected" ]; then
		echo "$where, as $role: ok (refused: ${expected:-nothing})"
	else
		echo "$where, as $role: FAILED"
		echo "    expected errors: ${expected:-none}"
		echo "    errors:          ${actual:-none}"
		sed 's/^/    | /' "$file" "$file.err"
		status=1
	fi
}

# The printed tour: one file per psql session, named N.ROLE, and its
# shell lines in http.sh.
mkdir "$work/tour"
http_port=$(perl -MIO::Socket::INET -e 'print IO::Socket::INET->new(Listen => 1,
	LocalAddr => "127.0.0.1", LocalPort => 0, ReuseAddr => 1)->sockport')
MANDANT_RUN_DIR=$work/run MANDANT_HTTP_PORT=$http_port scripts/run.sh tour >"$work/tour.txt"
awk -v dir="$work/tour" '
	/^  (curl |[A-Z]+=)/ {
		sub(/^  /, "")
		print >> (dir "/http.sh")
		next
	}
	/^  psql .* -U [a-z_]+ / {
		n++
		for (i = 1; i <= NF; i++)
			if ($i == "-U")
				role = $(i + 1)
		file = sprintf("%s/%d.%s", dir, n, role)
		printf "" > file
		next
	}
	/^  export / { next }
	/^  / {
		if (file == "") {
			print "tour: SQL before any psql line: " $0
			exit 1
		}
		sub(/^  /, "")
		print >> file
	}
' "$work/tour.txt"
for f in "$work"/tour/*; do
	[ -e "$f" ] || { echo "tour: no psql session found"; status=1; break; }
	case $f in *.out | *.err | */http.sh) continue ;; esac
	run_session "$f" "${f##*.}" "tour session $(basename "$f" | cut -d. -f1)"
done

# The tour's HTTP lines, through a gateway on the test cluster.
if [ ! -f "$work/tour/http.sh" ]; then
	echo "tour: no HTTP lines found"
	status=1
else
	MANDANT_DATABASE_URL="host=$PGHOST port=$PGPORT dbname=$db user=mandant_demo_gateway" \
		MANDANT_HTTP_PORT=$http_port MANDANT_BASE_DOMAIN=localhost MANDANT_GATEWAY_DIR=$work/gateway \
		shim/run >"$work/gateway.log" 2>&1 &
	gw_pid=$!
	i=0
	until curl -s -o /dev/null "http://127.0.0.1:$http_port/health" || [ $i -gt 100 ]; do
		sleep 0.1
		i=$((i + 1))
	done
	n=0
	while IFS= read -r line; do
		n=$((n + 1))
		code=$(echo "$line" | sed -n 's/.*# refused: \([A-Z_]*\)$/\1/p')
		case $line in
		[A-Z]*=*)
			eval "$line"
			name=${line%%=*}
			eval "value=\${$name}"
			if [ -n "$value" ]; then result=ok; else result="FAILED: $name is empty"; fi
			;;
		*" -o "*)
			file=$(echo "$line" | sed 's/.* -o \([^ ]*\).*/\1/')
			if eval "$line" && [ -s "$file" ]; then result=ok; else result="FAILED: no $file"; fi
			;;
		*)
			out=$(eval "$line") || out="curl failed: $?"
			if [ -n "$code" ]; then
				echo "$out" | grep -q "\"code\": *\"$code\"" && result="ok (refused: $code)" || result="FAILED: $out"
			else
				echo "$out" | grep -q '"success": *true' && result=ok || result="FAILED: $out"
			fi
			;;
		esac
		echo "tour HTTP line $n: $result"
		case $result in FAILED*) echo "    | $line"; status=1 ;; esac
	done <"$work/tour/http.sh"
fi

# README.md's blocks: NNN.ROLE.LINE for those to run.
mkdir "$work/readme"
awk -v dir="$work/readme" '
	/^```sql$/ { inblock = 1; first = 1; start = NR; next }
	inblock && /^```$/ { inblock = 0; if (file != "") close(file); file = ""; next }
	inblock && first {
		first = 0
		if ($0 ~ /^-- as [a-z_]+/) {
			role = $3
			sub(/[^a-z_].*$/, "", role)
			file = sprintf("%s/%03d.%s.%d", dir, ++run, role, start)
		} else if ($0 ~ /^-- excerpt/) {
			excerpts++
		} else {
			print "README.md:" start ": a sql block must start with \"-- as ROLE\" or \"-- excerpt\""
			bad = 1
		}
	}
	inblock && file != "" { print > file }
	END {
		printf "README.md: %d blocks to run, %d excerpts\n", run, excerpts
		exit bad
	}
' README.md || status=1
for f in "$work"/readme/*; do
	[ -e "$f" ] || { echo "README.md: no block to run"; status=1; break; }
	case $f in *.out | *.err) continue ;; esac
	name=$(basename "$f")
	role=$(echo "$name" | cut -d. -f2)
	run_session "$f" "$role" "README.md:${name##*.}"
done

# Both tours promise a clean schema: tenancy_lint finds nothing in what
# they created.
lint=$(su_psql -d "$db" -Atc "SELECT code || ' ' || object FROM mandant.tenancy_lint()")
if [ -n "$lint" ]; then
	echo "tenancy_lint after the tours:"
	echo "$lint" | sed 's/^/    /'
	status=1
fi

exit $status
