#!/bin/sh
# transport.sh: what reaches the gateway as HTTP: body limits (413 at
# MANDANT_MAX_BODY + 1), content types, a missing Content-Length and
# chunked bodies (411 from Kore, and the gateway survives), and the edges
# of pagination.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/accounts.inc"
accounts_gateway

# body_of N: a JSON body of exactly N bytes ({"message":"aaa..."}).
body_of() {
	printf '{"message":"%s"}' "$(head -c $(($1 - 14)) /dev/zero | tr '\0' a)" >"$http_work/body"
}
body_of 4096
ok "$([ "$(req -X POST -H "$json" --data-binary "@$http_work/body" "$gw/test/v1/echo")" = 200 ] && echo 0 || echo 1)" \
	"a body of exactly MANDANT_MAX_BODY (4096) bytes passes"
body_of 4097
ok "$([ "$(req -X POST -H "$json" --data-binary "@$http_work/body" "$gw/test/v1/echo")" = 413 ] && echo 0 || echo 1)" \
	"one byte more: 413"
ok "$([ "$(req -X POST -H "$json" -H 'Content-Length: 100000000' --data '{}' --max-time 5 "$gw/test/v1/echo")" = 413 ] && echo 0 || echo 1)" \
	"a Content-Length of 100 MB is refused before its body arrives: 413"
for type in text/plain application/x-www-form-urlencoded 'multipart/form-data; boundary=x' application/jsonx text/json; do
	ok "$([ "$(req -X POST -H "Content-Type: $type" --data '{"message":"x"}' "$gw/test/v1/echo")" = 400 ] &&
		envelope_code VALIDATION_ERROR && echo 0 || echo 1)" "Content-Type $type: 400 VALIDATION_ERROR"
done
ok "$([ "$(req -X POST -H 'Content-Type: Application/JSON' --data '{"message":"x"}' "$gw/test/v1/echo")" = 200 ] && echo 0 || echo 1)" \
	"the media type is compared without case: Application/JSON passes"
ok "$([ "$(req -X POST "$gw/test/v1/echo")" = 411 ] && echo 0 || echo 1)" "a POST without Content-Length: 411 (Kore)"
ok "$([ "$(req -X POST -H "$json" -H 'Transfer-Encoding: chunked' --data '{"message":"x"}' "$gw/test/v1/echo")" = 411 ] && echo 0 || echo 1)" \
	"a chunked body: 411 (Kore)"
ok "$([ "$(req -X PUT -H 'Transfer-Encoding: chunked' -H "$json" -T "$http_work/body" "$gw/test/v1/echo")" = 411 ] && echo 0 || echo 1)" \
	"a chunked upload: 411"
ok "$([ "$(req -X POST -H "$json" --data '' "$gw/test/v1/echo")" = 200 ] && echo 0 || echo 1)" \
	"an empty body with Content-Length 0 is no body: 200"
# a raw request that promises more body than it sends, then closes
perl -MIO::Socket::INET -e '
	my $s = IO::Socket::INET->new(PeerAddr => "127.0.0.1", PeerPort => $ARGV[0]) or die;
	print $s "POST /test/v1/echo HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 50\r\n\r\n{\"mess";
	close $s;' "$gw_port"
codes=""
for path in /health /test/v1/echo /health /test/v1/echo; do codes="$codes $(req "$gw$path")"; done
ok "$([ "$codes" = " 200 200 200 200" ] && kill -0 "$gw_pid" && echo 0 || echo 1)" \
	"after all that and a truncated body the gateway still answers:$codes"

# pagination: 5 tasks of acme
ada=$(login ada@acme.test acme)
for t in one two three four five; do
	req -X POST -H 'X-Tenant: acme' -H "Authorization: Bearer $ada" -H "$json" --data "{\"title\":\"$t\"}" "$gw/test/v1/tasks" >/dev/null
done
page() {
	req -H 'X-Tenant: acme' -H "Authorization: Bearer $ada" "$gw/test/v1/tasks?$1"
}
ok "$([ "$(page 'page=2&pageSize=2')" = 200 ] && [ "$(jget pagination)" = '{"page":2,"pageSize":2,"total":5,"totalPages":3}' ] &&
	[ "$(jget data.0.title)" = three ] && echo 0 || echo 1)" "page 2 of size 2: $(jget pagination)"
ok "$([ "$(page 'page=3&pageSize=2')" = 200 ] && [ "$(jget data)" = '[{"id":5,"status":"open","tenantId":"a7000000-0000-4000-8000-00000000000a","title":"five"}]' ] &&
	echo 0 || echo 1)" "the last page holds the rest: $(jget data)"
ok "$([ "$(page 'page=4&pageSize=2')" = 200 ] && [ "$(jget data)" = '[]' ] && [ "$(jget pagination.total)" = 5 ] && echo 0 || echo 1)" \
	"a page beyond the last: 200, no rows, the total still 5"
ok "$([ "$(page 'page=99999999&pageSize=100')" = 200 ] && [ "$(jget data)" = '[]' ] && echo 0 || echo 1)" "far beyond: 200, no rows"
ok "$([ "$(page 'pageSize=100')" = 200 ] && [ "$(jget pagination.pageSize)" = 100 ] && [ "$(jget pagination.totalPages)" = 1 ] && echo 0 || echo 1)" \
	"pageSize 100 is allowed"
ok "$([ "$(page '')" = 200 ] && [ "$(jget pagination.page)" = 1 ] && [ -n "$(jget pagination.pageSize)" ] && echo 0 || echo 1)" \
	"without parameters: page 1 of pageSize $(jget pagination.pageSize)"
for bad in pageSize=101 pageSize=0 pageSize=-1 page=0 page=-2 page=abc pageSize=1.5 page=99999999999999999999; do
	ok "$([ "$(page "$bad")" = 400 ] && envelope_code VALIDATION_ERROR && body_has '"field": *"page(Size)?"' && echo 0 || echo 1)" \
		"$bad: 400 VALIDATION_ERROR naming the field: $(jget error.details)"
done
ok "$([ "$(page 'status=open&pageSize=3')" = 200 ] && [ "$(jget pagination.total)" = 5 ] && echo 0 || echo 1)" \
	"pagination with a filter of the function"
ok "$([ "$(page 'status=done&status=open')" = 400 ] && body_has '"field": *"status"' && echo 0 || echo 1)" \
	"an argument given twice in the query: 400 naming it"
ok "$([ "$(page 'page=1&page=2')" = 400 ] && envelope_code VALIDATION_ERROR && echo 0 || echo 1)" "page given twice: 400"
done_testing
