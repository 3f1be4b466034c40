#!/bin/sh
# outage.sh: statement timeout, the database stopped and started again
# under a running gateway, and SIGTERM.
. "$(dirname "$0")/lib.sh"
http_cluster
gateway_start

t0=$(date +%s%N)
ok "$([ "$(req "$gw/test/v1/sleep")" = 503 ] && envelope_code TIMEOUT; echo $?)" "a statement over the timeout is 503 TIMEOUT"
ms=$((($(date +%s%N) - t0) / 1000000))
ok "$([ $ms -lt 3000 ]; echo $?)" "the timeout cuts it short ($ms ms for MANDANT_STATEMENT_TIMEOUT_MS=500)"
ok "$(! body_has 'pg_sleep|statement timeout|canceling'; echo $?)" "no server text in the answer"
ok "$([ "$(req "$gw/test/v1/echo")" = 200 ]; echo $?)" "the next request on the pool succeeds"

# warm: eight requests at once, so that both workers' pools hold
# connections (that go stale when the database stops).
warm() {
	pids=""
	i=0
	while [ $i -lt 8 ]; do
		curl -s -o /dev/null "$gw/test/v1/echo" &
		pids="$pids $!"
		i=$((i + 1))
	done
	# shellcheck disable=SC2086
	wait $pids
}
warm

db_stop
t0=$(date +%s%N)
ok "$([ "$(req "$gw/test/v1/echo")" = 503 ] && envelope_code SERVICE_UNAVAILABLE; echo $?)" \
	"with the database stopped, a request is 503 SERVICE_UNAVAILABLE"
ms=$((($(date +%s%N) - t0) / 1000000))
ok "$([ $ms -lt 1000 ]; echo $?)" "and answered within 1 s ($ms ms)"
ok "$([ "$(req "$gw/ready")" = 503 ] && envelope_code SERVICE_UNAVAILABLE; echo $?)" "/ready is 503"
ok "$([ "$(req "$gw/health")" = 200 ]; echo $?)" "/health is still 200"

db_start
codes=""
i=0
while [ $i -lt 6 ]; do codes="$codes $(req "$gw/test/v1/echo")"; i=$((i + 1)); done
ok "$([ "$codes" = " 200 200 200 200 200 200" ]; echo $?)" "once it is back, every request succeeds without a restart:$codes"
ok "$([ "$(req "$gw/ready")" = 200 ]; echo $?)" "/ready is 200 again"

# A restart the gateway does not see: stale pool connections are dropped.
warm
db_stop
db_start
codes=""
i=0
while [ $i -lt 6 ]; do codes="$codes $(req "$gw/test/v1/echo")"; i=$((i + 1)); done
ok "$([ "$codes" = " 200 200 200 200 200 200" ]; echo $?)" "after a restart between requests, no request fails:$codes"

curl -s "$gw/metrics" >"$http_work/metrics.txt"
check "database errors are counted by kind" grep -Eq '^mandant_gateway_db_errors_total\{kind="unavailable"\} [1-9]' "$http_work/metrics.txt"
check "the timeout is counted as its route's 503" \
	grep -q '^mandant_gateway_requests_total{route="GET /test/v1/sleep",status="503"} 1$' "$http_work/metrics.txt"

# SIGTERM with a request in flight: the gateway exits 0.
curl -s -o /dev/null "$gw/test/v1/sleep" &
inflight=$!
sleep 0.2
gateway_stop
wait $inflight || true
ok "$([ "$gw_status" -eq 0 ]; echo $?)" "SIGTERM stops the gateway with exit status 0"
ok "$(! curl -s -o /dev/null "$gw/health"; echo $?)" "and nothing listens on its port any more"

done_testing
