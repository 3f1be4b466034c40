# lib.sh: what the end-to-end tests of the HTTP gateway share; sourced by
# test/http/*.sh (scripts/test.sh runs them as the suite "http").
#
# Each test file starts its own PostgreSQL cluster (so it may stop it) and
# its own gateway (shim/run, on a free port), prints TAP ("ok N - what")
# and stops both on exit.  The cluster gets the settings of the test
# servers ($MANDANT_TEST_CONF, written by scripts/test.sh) and a database
# with the extension and the test routes of test/http/fixture.sql.
#
# For working on the shim alone, an existing cluster and database can be
# named instead: MANDANT_HTTP_TEST_DATADIR (its data directory, stopped
# and started by outage.sh), MANDANT_HTTP_TEST_URL (the conninfo of a
# database already holding the routes).
set -eu

cd "$(dirname "$0")/../.."
top=$(pwd)
. scripts/cluster.sh

[ -x shim/run ] && [ -f shim/shim.so ] || { echo "Bail out! shim/shim.so is not built (make)"; exit 1; }

http_work=$(mktemp -d /tmp/mandant-http.XXXXXX)
chmod 755 "$http_work"
tap_n=0
tap_failed=0
gw_pid=""

# free_port: a TCP port on 127.0.0.1 that nothing listens on now.
free_port() {
	perl -MIO::Socket::INET -e 'print IO::Socket::INET->new(Listen => 1,
		LocalAddr => "127.0.0.1", LocalPort => 0, ReuseAddr => 1)->sockport'
}

# ok CONDITION-EXIT-STATUS DESCRIPTION: one TAP line.
ok() {
	tap_n=$((tap_n + 1))
	if [ "$1" -eq 0 ]; then
		echo "ok $tap_n - $2"
	else
		echo "not ok $tap_n - $2"
		tap_failed=$((tap_failed + 1))
	fi
}

# check DESCRIPTION COMMAND...: ok when the command succeeds.
check() {
	desc=$1
	shift
	if "$@" >"$http_work/check.out" 2>&1; then
		ok 0 "$desc"
	else
		ok 1 "$desc"
		sed 's/^/# /' "$http_work/check.out" | head -20
	fi
}

# http_cluster: the cluster and database of this test file.
http_cluster() {
	if [ -n "${MANDANT_HTTP_TEST_DATADIR:-}" ]; then
		datadir=$MANDANT_HTTP_TEST_DATADIR
	else
		datadir=$http_work/data
		sock=$http_work/sock
		cluster_init "$datadir" "$sock" "$(free_port)"
		[ -z "${MANDANT_TEST_CONF:-}" ] ||
			as_server_user sh -c "cat '$MANDANT_TEST_CONF' >> '$datadir/postgresql.conf'"
		own_cluster=1
	fi
	pglog=$http_work/server.log
	touch "$pglog"
	give_to_server_user "$http_work"
	cluster_start "$datadir" "$pglog" || true
	if [ -n "${MANDANT_HTTP_TEST_URL:-}" ]; then
		db_url=$MANDANT_HTTP_TEST_URL
	else
		port=$(sed -n 's/^port = //p' "$datadir/postgresql.conf" | tail -1)
		psql -X -q -v ON_ERROR_STOP=1 -h "$sock" -p "$port" -U postgres -d postgres \
			-c "CREATE DATABASE mandant_http" >/dev/null
		psql -X -q -v ON_ERROR_STOP=1 -h "$sock" -p "$port" -U postgres -d mandant_http \
			-f test/http/fixture.sql >/dev/null
		db_url="host=$sock port=$port user=mandant_http_test_gateway dbname=mandant_http"
	fi
}

# db_stop / db_start: stop or start the cluster under the gateway.
db_stop() {
	cluster_stop "$datadir"
}
db_start() {
	cluster_start "$datadir" "$pglog"
}

# gateway_start [VAR=VALUE...]: start shim/run on a free port with the
# test settings (and VAR=VALUE), and wait until /health answers.  With
# gw_cacert set (a CA file for curl), the gateway is addressed over https.
gateway_start() {
	gw_port=$(free_port)
	gw=http://127.0.0.1:$gw_port
	[ -z "${gw_cacert:-}" ] || gw=https://127.0.0.1:$gw_port
	gw_log=$http_work/gateway.err
	env MANDANT_DATABASE_URL="$db_url" MANDANT_HTTP_PORT="$gw_port" \
		MANDANT_GATEWAY_DIR="$http_work/gateway" MANDANT_HTTP_WORKERS=2 \
		MANDANT_STATEMENT_TIMEOUT_MS=500 MANDANT_MAX_BODY=4096 \
		MANDANT_CORS_ORIGINS="https://app.example.test, https://admin.example.test" \
		"$@" shim/run >"$http_work/gateway.out" 2>"$gw_log" &
	gw_pid=$!
	i=0
	until curl -s -o /dev/null ${gw_cacert:+--cacert "$gw_cacert"} "$gw/health"; do
		i=$((i + 1))
		if [ $i -gt 100 ] || ! kill -0 "$gw_pid" 2>/dev/null; then
			echo "Bail out! the gateway did not start"
			cat "$http_work/gateway.out" "$gw_log"
			exit 1
		fi
		sleep 0.1
	done
}

# gateway_stop: SIGTERM, and the gateway's exit status in gw_status.
gateway_stop() {
	gw_status=0
	[ -n "$gw_pid" ] || return 0
	kill -TERM "$gw_pid" 2>/dev/null || true
	wait "$gw_pid" || gw_status=$?
	gw_pid=""
}

# http_cleanup: stop what this file started.
http_cleanup() {
	gateway_stop
	if [ -n "${own_cluster:-}" ]; then
		cluster_stop "$datadir"
	elif [ -n "${datadir:-}" ]; then
		cluster_start "$datadir" "$pglog" 2>/dev/null || true
	fi
	# scripts/test.sh checks the server logs of every suite for crashes.
	[ -z "${MANDANT_TEST_WORK:-}" ] || [ -z "${own_cluster:-}" ] ||
		cp "$pglog" "$MANDANT_TEST_WORK/http_$(basename "$0" .sh).server.log" 2>/dev/null || true
	rm -rf "$http_work"
}
trap http_cleanup EXIT INT TERM

# req CURL-ARGS...: a request; the headers go to $http_work/h, the body
# to $http_work/b, and the status is printed.
req() {
	curl -s -o "$http_work/b" -D "$http_work/h" -w '%{http_code}' "$@"
}

# header NAME: the value of response header NAME of the last req.
header() {
	tr -d '\r' <"$http_work/h" | sed -n "s/^$1: //Ip" | head -1
}

# body_has REGEX: whether the body of the last req matches.
body_has() {
	grep -Eq "$1" "$http_work/b"
}

# envelope_code CODE: whether the last body is an error envelope with CODE.
envelope_code() {
	body_has "\"success\": *false" && body_has "\"code\": *\"$1\"" &&
		body_has "\"requestId\": *\""
}

# done_testing: the plan line; the exit status says whether all passed.
done_testing() {
	echo "1..$tap_n"
	[ "$tap_failed" -eq 0 ]
}
