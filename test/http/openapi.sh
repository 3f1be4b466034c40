#!/bin/sh
# openapi.sh: GET /api/v1/openapi.json through the gateway, validated by
# Redocly CLI (redocly lint, OpenAPI 3.1, rules of test/http/.redocly.yaml),
# and what it must list: the built-in and the fixture's routes with their
# parameters, bodies and required scopes.
#
# Redocly CLI comes from npm, pinned, installed once into a cache outside
# the repository (${XDG_CACHE_HOME:-$HOME/.cache}/mandant/npm) and reused;
# without npm, or with the registry unreachable, its test is skipped with
# the reason.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/accounts.inc"
redocly_version=2.77.0		# needs Node.js 20.19 or 22.12 and later
npm_dir=${XDG_CACHE_HOME:-$HOME/.cache}/mandant/npm
http_cluster
gateway_start
doc=$http_work/openapi.json
ok "$([ "$(req "$gw/api/v1/openapi.json")" = 200 ] && [ "$(header content-type)" = application/json ] &&
	[ "$(jget openapi)" = 3.1.0 ] && [ -z "$(jget success)" ] && cp "$http_work/b" "$doc" && echo 0 || echo 1)" \
	"GET /api/v1/openapi.json answers the document itself, without the envelope"

# redocly_installed: whether the pinned version is in the cache.
redocly_installed() {
	[ -x "$npm_dir/node_modules/.bin/redocly" ] &&
		grep -q "\"version\": *\"$redocly_version\"" "$npm_dir/node_modules/@redocly/cli/package.json" 2>/dev/null
}
# node_recent: whether node is new enough for the pinned version.
node_recent() {
	node -e 'const [a, b] = process.versions.node.split(".").map(Number);
		process.exit(a > 22 || (a === 22 && b >= 12) || (a === 20 && b >= 19) ? 0 : 1)'
}
lint=""
if redocly_installed; then
	lint=yes
elif ! command -v npm >/dev/null 2>&1 || ! command -v node >/dev/null 2>&1; then
	skip "redocly lint: npm and node are not installed (scripts/install-deps.sh)"
elif ! node_recent; then
	skip "redocly lint: node $(node --version) is older than Redocly CLI $redocly_version needs (20.19, 22.12)"
else
	mkdir -p "$npm_dir"
	if flock -o "$npm_dir/.lock" timeout 300 npm install --prefix "$npm_dir" --no-audit --no-fund --no-save \
		--loglevel=error "@redocly/cli@$redocly_version" >"$http_work/npm.log" 2>&1 && redocly_installed; then
		lint=yes
	elif ! timeout 30 npm ping >/dev/null 2>&1; then
		skip "npm registry unreachable"
	else
		ok 1 "npm installs @redocly/cli@$redocly_version"
		sed 's/^/# /' "$http_work/npm.log" | tail -20
	fi
fi
if [ -n "$lint" ]; then
	if (cd "$http_work" && REDOCLY_TELEMETRY=off REDOCLY_SUPPRESS_UPDATE_NOTICE=true NO_COLOR=1 \
		timeout 120 "$npm_dir/node_modules/.bin/redocly" lint --config "$top/test/http/.redocly.yaml" \
		--format=stylish openapi.json) >"$http_work/lint.out" 2>&1; then
		ok 0 "redocly lint $redocly_version finds no error in the document"
	else
		ok 1 "redocly lint $redocly_version finds no error in the document"
	fi
	# its findings, warnings included, as TAP comments
	grep -E '^ +[0-9]+:[0-9]+ +(error|warning)' "$http_work/lint.out" |
		awk '{ n[$2 " " $3]++ } END { for (k in n) print "# redocly: " n[k] " x " k }' | sort
fi

# what the document lists, checked by perl: "STATUS|description" lines
perl -MJSON::PP -e '
	my $d = decode_json(do { local $/; <STDIN> });
	my $p = $d->{paths};
	sub t { my ($c, $what) = @_; print(($c ? 0 : 1), "|", $what, "\n"); }
	sub param { my ($op, $name, $in) = @_; (grep { $_->{name} eq $name && $_->{in} eq $in } @{$op->{parameters} || []})[0] }
	sub body { $_[0]{requestBody}{content}{"application/json"}{schema} || {} }
	sub public { ref $_[0]{security} eq "ARRAY" && !@{$_[0]{security}} }
	sub bearer { ref $_[0]{security} eq "ARRAY" && exists $_[0]{security}[0]{bearer} }
	t($d->{openapi} eq "3.1.0", "openapi 3.1.0");
	t($d->{components}{securitySchemes}{bearer}{scheme} eq "bearer", "a bearer security scheme");
	for my $r ("post /api/v1/auth/login", "post /api/v1/auth/refresh", "post /api/v1/auth/token",
			   "post /api/v1/auth/logout", "get /api/v1/auth/me", "post /api/v1/auth/totp/enroll",
			   "post /api/v1/auth/totp/confirm", "post /api/v1/tenants", "get /api/v1/members",
			   "post /api/v1/members", "patch /api/v1/members/{userId}", "delete /api/v1/members/{userId}",
			   "get /api/v1/config/{service}/{key}", "put /api/v1/config/{service}/{key}", "get /api/v1/audit",
			   "post /internal/v1/outbox/claim", "post /internal/v1/outbox/ack", "get /.well-known/jwks.json",
			   "get /api/v1/openapi.json", "get /test/v1/echo", "post /test/v1/echo", "get /test/v1/nap",
			   "get /test/v1/tasks", "post /test/v1/tasks", "put /test/v1/tasks/{taskId}/status",
			   "post /test/v1/explode", "get /test/v1/whose") {
		my ($m, $path) = split / /, $r;
		t($p->{$path}{$m}, "lists $m $path");
	}
	my $login = $p->{"/api/v1/auth/login"}{post};
	t(public($login) && join(",", sort @{body($login)->{required}}) eq "email,password"
	  && body($login)->{properties}{totpCode} && !body($login)->{properties}{clientIp}
	  && !body($login)->{properties}{tenantSlug}, "login: public, email and password required, totpCode optional, no clientIp or tenantSlug");
	t(!body($p->{"/api/v1/auth/refresh"}{post})->{properties}{refreshToken}, "refresh: no refreshToken in the body (it is the cookie)");
	t(!body($p->{"/api/v1/auth/logout"}{post})->{properties}{accessToken} && bearer($p->{"/api/v1/auth/logout"}{post}),
	  "logout: signed in, no accessToken in the body");
	my $members = $p->{"/api/v1/members"}{get};
	t($members->{"x-required-scope"} eq "read" && bearer($members), "GET /api/v1/members needs scope read");
	t(param($members, "pageSize", "query") && param($members, "pageSize", "query")->{schema}{maximum} == 100
	  && param($members, "page", "query"), "GET /api/v1/members: page and pageSize (at most 100)");
	t($members->{responses}{200}{content}{"application/json"}{schema}{"\$ref"} eq "#/components/schemas/Page", "a paginated route answers a Page");
	my $patch = $p->{"/api/v1/members/{userId}"}{patch};
	t($patch->{"x-required-scope"} eq "admin" && param($patch, "userId", "path")->{required}
	  && param($patch, "userId", "path")->{schema}{format} eq "uuid" && join(",", @{body($patch)->{required}}) eq "role",
	  "PATCH /api/v1/members/{userId}: scope admin, userId a uuid in the path, role required");
	my $put = $p->{"/api/v1/config/{service}/{key}"}{put};
	t($put->{"x-required-scope"} eq "admin" && param($put, "service", "path") && param($put, "key", "path")
	  && body($put)->{properties}{expectedVersion}{type} eq "integer", "PUT config: scope admin, service and key in the path, expectedVersion an integer");
	t($p->{"/api/v1/audit"}{get}{"x-required-scope"} eq "admin" && param($p->{"/api/v1/audit"}{get}, "entityType", "query")
	  && param($p->{"/api/v1/audit"}{get}, "since", "query")->{schema}{format} eq "date-time", "GET audit: scope admin, entityType and since (date-time)");
	my $tasks = $p->{"/test/v1/tasks"}{get};
	t($tasks->{"x-required-scope"} eq "read" && $tasks->{summary} eq "The tasks of the tenant"
	  && param($tasks, "status", "query") && !param($tasks, "status", "query")->{required},
	  "GET /test/v1/tasks: scope read, its summary, status an optional query parameter");
	my $add = $p->{"/test/v1/tasks"}{post};
	t($add->{"x-required-scope"} eq "write" && join(",", @{body($add)->{required}}) eq "title" && body($add)->{additionalProperties} == 0
	  && $add->{requestBody}{required}, "POST /test/v1/tasks: scope write, title required, nothing else accepted");
	my $move = $p->{"/test/v1/tasks/{taskId}/status"}{put};
	t($move->{"x-required-scope"} eq "write" && param($move, "taskId", "path")->{schema}{type} eq "integer"
	  && param($move, "taskId", "path")->{schema}{format} eq "int64" && body($move)->{properties}{status}{type} eq "string"
	  && !body($move)->{properties}{taskId}, "PUT /test/v1/tasks/{taskId}/status: taskId an int64 in the path, status in the body");
	t(public($p->{"/test/v1/echo"}{get}) && param($p->{"/test/v1/echo"}{get}, "message", "query"), "GET /test/v1/echo: public, message in the query");
	t(param($p->{"/test/v1/nap"}{get}, "seconds", "query")->{schema}{type} eq "number", "a numeric argument is a number");
	my (%ids, $dup, $bad);
	for my $path (keys %$p) {
		my @tpl = $path =~ /\{(\w+)\}/g;
		for my $m (keys %{$p->{$path}}) {
			my $op = $p->{$path}{$m};
			$dup++ if $ids{$op->{operationId}}++;
			$bad .= " $m $path" unless $op->{responses}{200} && $op->{responses}{default} && $op->{summary}
				&& (public($op) || bearer($op)) && !grep { !param($op, $_, "path") } @tpl;
		}
	}
	t(!$dup, "operationIds are unique");
	t(!$bad, "every operation: a summary, 200 and default answers, security, its path parameters" . ($bad // ""));
' <"$doc" >"$http_work/doc.tap" || echo "1|the document is JSON" >"$http_work/doc.tap"
while IFS='|' read -r status what; do
	ok "$status" "$what"
done <"$http_work/doc.tap"
done_testing
