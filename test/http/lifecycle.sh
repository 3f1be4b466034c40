#!/bin/sh
# lifecycle.sh: routes registered, changed and dropped while the gateway
# runs are served at once (every worker, every pooled connection), and
# SIGTERM with slow requests in flight: they finish, the gateway exits 0.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/accounts.inc"
http_cluster
gateway_start MANDANT_DB_CONNECTIONS=3

# answers PATH: the status and data of 8 requests at once (both workers,
# several pooled connections), sorted and counted.
answers() {
	i=0
	pids=""
	while [ $i -lt 8 ]; do
		curl -s -w ' %{http_code}\n' "$gw$1" >"$http_work/a$i" &
		pids="$pids $!"
		i=$((i + 1))
	done
	# shellcheck disable=SC2086
	wait $pids
	cat "$http_work"/a? | sed 's/.*"data":\([^,}]*\).* \([0-9]*\)$/\2 \1/; s/.*"code":"\([A-Z_]*\)".* \([0-9]*\)$/\2 \1/' |
		sort | uniq -c | sed 's/^ *//' | tr '\n' ';'
}
ok "$([ "$(answers /test/v1/late)" = '8 404 NOT_FOUND;' ] && echo 0 || echo 1)" "an unregistered path: 404 everywhere"
answers /test/v1/echo >/dev/null
su_sql "CREATE FUNCTION http_test.late() RETURNS text LANGUAGE sql AS \$\$ SELECT 'first' \$\$;
	SELECT mandant.http_route('GET', '/test/v1/late', 'http_test.late()', public => true)" >/dev/null
got=$(answers /test/v1/late)
ok "$([ "$got" = '8 200 "first";' ] && echo 0 || echo 1)" "a route registered while the gateway runs is served at once: $got"
su_sql "CREATE FUNCTION http_test.later() RETURNS text LANGUAGE sql AS \$\$ SELECT 'second' \$\$;
	SELECT mandant.http_route('GET', '/test/v1/late', 'http_test.later()', public => true)" >/dev/null
got=$(answers /test/v1/late)
ok "$([ "$got" = '8 200 "second";' ] && echo 0 || echo 1)" "the route pointed at another function: served at once: $got"
su_sql "CREATE OR REPLACE FUNCTION http_test.later() RETURNS text LANGUAGE sql AS \$\$ SELECT 'third' \$\$" >/dev/null
got=$(answers /test/v1/late)
ok "$([ "$got" = '8 200 "third";' ] && echo 0 || echo 1)" "the function redefined: served at once: $got"
su_sql "SELECT mandant.http_route('GET', '/test/v1/late', 'http_test.later()', 'read')" >/dev/null
got=$(answers /test/v1/late)
ok "$([ "$got" = '8 401 TOKEN_INVALID;' ] && echo 0 || echo 1)" "the route made protected: a token is required at once: $got"
su_sql "SELECT mandant.http_route('POST', '/test/v1/late', 'http_test.later()', public => true)" >/dev/null
ok "$([ "$(req -X DELETE "$gw/test/v1/late")" = 405 ] && [ "$(header allow)" = "GET, POST" ] && echo 0 || echo 1)" \
	"a method added: allow names it at once: $(header allow)"
su_sql "SELECT mandant.drop_http_route('GET', '/test/v1/late'); SELECT mandant.drop_http_route('POST', '/test/v1/late')" >/dev/null
got=$(answers /test/v1/late)
ok "$([ "$got" = '8 404 NOT_FOUND;' ] && echo 0 || echo 1)" "the routes dropped: 404 at once: $got"

# SIGTERM while slow requests (1 s each) are in flight: sent once all six
# statements run (three pooled connections in each of two workers)
i=0
pids=""
while [ $i -lt 6 ]; do
	{
		rc=0
		curl -s -o "$http_work/nap$i" -w '%{http_code}' "$gw/test/v1/nap?seconds=1" >"$http_work/nap$i.status" 2>/dev/null || rc=$?
		echo " (curl exit $rc)" >>"$http_work/nap$i.status"
	} &
	pids="$pids $!"
	i=$((i + 1))
done
i=0
until [ "$(su_sql "SELECT count(*) FROM pg_stat_activity WHERE state = 'active' AND query LIKE '%http_call%'")" -ge 6 ] ||
	[ $i -ge 50 ]; do
	sleep 0.1
	i=$((i + 1))
done
t0=$(date +%s%N)
gateway_stop
ms=$((($(date +%s%N) - t0) / 1000000))
# shellcheck disable=SC2086
wait $pids || true
statuses=$(cat "$http_work"/nap?.status | tr '\n' ' ')
ok "$([ "$gw_status" -eq 0 ] && echo 0 || echo 1)" "SIGTERM with requests in flight: the gateway exits 0 (after $ms ms)"
clean=0
i=0
while [ $i -lt 6 ]; do
	case $(cut -c1-3 "$http_work/nap$i.status") in
	200) grep -q '"slept": *1' "$http_work/nap$i" || clean=1 ;;
	503) grep -q '"success": *false' "$http_work/nap$i" || clean=1
		statuses="$statuses$(sed -n 's/.*"code": *"\([A-Z_]*\)".*/\1/p' "$http_work/nap$i") " ;;
	*) clean=1 ;;
	esac
	i=$((i + 1))
done
ok "$([ $clean = 0 ] && echo 0 || echo 1)" "every request in flight got a whole answer (200, or an enveloped 503): $statuses"
ok "$(! curl -s -o /dev/null "$gw/health" && echo 0 || echo 1)" "nothing listens on the port afterwards"
done_testing
