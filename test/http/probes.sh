#!/bin/sh
# probes.sh: /health, /ready, /metrics and the security headers, through
# a real gateway and a real cluster.
. "$(dirname "$0")/lib.sh"
http_cluster
gateway_start

ok "$([ "$(req "$gw/health")" = 200 ] && body_has '"success": *true'; echo $?)" "/health answers 200 with an envelope"
ok "$([ "$(req "$gw/ready")" = 200 ]; echo $?)" "/ready answers 200 when the database is reachable"

# security_headers: the headers every response carries (HSTS only with TLS).
security_headers() {
	[ "$(header x-content-type-options)" = nosniff ] &&
		[ "$(header x-frame-options)" = DENY ] &&
		[ "$(header referrer-policy)" = no-referrer ] &&
		[ "$(header content-security-policy)" = "default-src 'none'; frame-ancestors 'none'" ] &&
		[ -z "$(header strict-transport-security)" ] &&
		[ -n "$(header x-request-id)" ]
}
req "$gw/health" >/dev/null
check "security headers on /health, no HSTS without TLS" security_headers
ok "$([ "$(req "$gw/test/v1/no-such-route")" = 404 ] && envelope_code NOT_FOUND && security_headers; echo $?)" \
	"an unknown route is the database's 404 NOT_FOUND, with the security headers"
ok "$([ "$(req -X POST -H 'Content-Type: text/plain' --data 'x' "$gw/test/v1/echo")" = 400 ] && security_headers; echo $?)" \
	"the gateway's own refusal carries the security headers"
ok "$([ "$(req "$gw/test/v1/echo")" = 200 ] && [ "$(header content-type)" = application/json ] && security_headers; echo $?)" \
	"a routed request answers 200 application/json with the security headers"

# Metrics: Prometheus text that promtool accepts, totals of all workers.
metric() {
	curl -s "$gw/metrics" | awk -v m="$1" 'index($0, m " ") == 1 { print $NF }'
}
before=$(metric 'mandant_gateway_requests_total{route="/health",status="200"}')
i=0
while [ $i -lt 20 ]; do
	curl -s -o /dev/null "$gw/health"
	i=$((i + 1))
done
after=$(metric 'mandant_gateway_requests_total{route="/health",status="200"}')
ok "$([ $((after - before)) -eq 20 ]; echo $?)" "/metrics counts every /health request (20 more: $before -> $after)"
curl -s "$gw/metrics" >"$http_work/metrics.txt"
check "promtool check metrics accepts /metrics" promtool check metrics <"$http_work/metrics.txt"
check "requests are counted by route template and status" \
	grep -q '^mandant_gateway_requests_total{route="GET /test/v1/echo",status="200"} 1$' "$http_work/metrics.txt"
check "unmatched requests are labelled unmatched" \
	grep -q '^mandant_gateway_requests_total{route="unmatched",status="404"} 1$' "$http_work/metrics.txt"
check "the duration histogram has a +Inf bucket per route" \
	grep -q '^mandant_gateway_request_duration_seconds_bucket{route="GET /test/v1/echo",le="+Inf"} 1$' "$http_work/metrics.txt"
check "the pool gauge and database errors are exported" \
	grep -q '^mandant_gateway_db_connections_in_use 0$' "$http_work/metrics.txt"
req "$gw/metrics" >/dev/null
check "/metrics answers 200 as text/plain" sh -c "tr -d '\r' <'$http_work/h' | grep -qi '^content-type: text/plain'"

done_testing
