#!/bin/sh
# ids.sh: X-Request-Id and X-Trace-Id kept or generated, and the JSON log
# line of each request.
. "$(dirname "$0")/lib.sh"
http_cluster
gateway_start

uuid='^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$'
req -H 'X-Request-Id: req-OK_1.2' -H 'X-Trace-Id: trace-abc' "$gw/test/v1/echo" >/dev/null
ok "$([ "$(header x-request-id)" = req-OK_1.2 ] && body_has '"requestId": *"req-OK_1.2"'; echo $?)" \
	"a sane X-Request-Id is kept, in the header and the envelope"
ok "$([ "$(header x-trace-id)" = trace-abc ]; echo $?)" "a sane X-Trace-Id is propagated"
req "$gw/test/v1/echo" >/dev/null
ok "$(header x-request-id | grep -Eq "$uuid"; echo $?)" "a missing X-Request-Id is generated (UUID v4)"
ok "$(header x-trace-id | grep -Eq '^[0-9a-f]{32}$'; echo $?)" "a missing X-Trace-Id is generated (32 hex digits)"
long=$(printf '%065d' 0)
req -H "X-Request-Id: $long" "$gw/health" >/dev/null
ok "$(header x-request-id | grep -Eq "$uuid"; echo $?)" "an X-Request-Id over 64 characters is replaced"
req -H 'X-Request-Id: a/b<script>' "$gw/health" >/dev/null
ok "$(header x-request-id | grep -Eq "$uuid"; echo $?)" "an X-Request-Id with other characters is replaced"
req -H "X-Request-Id: $(printf '%064d' 0)" "$gw/health" >/dev/null
ok "$([ "$(header x-request-id)" = "$(printf '%064d' 0)" ]; echo $?)" "an X-Request-Id of 64 characters is kept"

# The log line of the first request, read as JSON.
gateway_stop
check "every log line is JSON with the fields of the platform" perl -MJSON::PP -e '
	my $n = 0;
	while (my $line = <STDIN>) {
		my $l = decode_json($line);
		for my $k (qw(ts level service requestId traceId tenantId method route status durationMs)) {
			exists $l->{$k} or die "no $k in $line";
		}
		$l->{ts} =~ /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/ or die "ts $l->{ts}";
		$l->{service} eq "mandant-gateway" or die;
		$l->{durationMs} =~ /^[0-9.]+$/ or die;
		$n++;
	}
	$n >= 6 or die "only $n lines";
' <"$gw_log"
check "the log line names request, trace, method, route and status" perl -MJSON::PP -e '
	while (my $line = <STDIN>) {
		my $l = decode_json($line);
		next unless $l->{requestId} eq "req-OK_1.2";
		exit(!($l->{traceId} eq "trace-abc" && $l->{method} eq "GET" &&
		    $l->{route} eq "GET /test/v1/echo" && $l->{status} == 200 &&
		    $l->{level} eq "info"));
	}
	exit 1;
' <"$gw_log"

# The client address: the peer; behind a trusted proxy, the last address
# it forwarded that is not itself a proxy; a client's own X-Forwarded-For
# is not believed.
gateway_start
req -H 'X-Forwarded-For: 203.0.113.9' "$gw/test/v1/address" >/dev/null
ok "$(body_has '"clientIp": *"127.0.0.1"'; echo $?)" "X-Forwarded-For from an untrusted peer is ignored"
gateway_stop
gateway_start MANDANT_TRUSTED_PROXIES="10.0.0.1, 127.0.0.1"
req -H 'X-Forwarded-For: 198.51.100.1, 203.0.113.9, 10.0.0.1' "$gw/test/v1/address" >/dev/null
ok "$(body_has '"clientIp": *"203.0.113.9"'; echo $?)" "behind trusted proxies, the last forwarded address that is no proxy"
req -H 'X-Forwarded-For: not-an-address' "$gw/test/v1/address" >/dev/null
ok "$(body_has '"clientIp": *"127.0.0.1"'; echo $?)" "a forwarded value that is no address leaves the peer"

done_testing
