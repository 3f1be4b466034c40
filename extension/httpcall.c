/*-------------------------------------------------------------------------
 *
 * httpcall.c
 *		mandant.http_call(): one HTTP request, answered in one statement.
 *
 * The gateway (shim/) parses HTTP and hands every request to this
 * function: method, path, query string, Host, X-Tenant, the bearer token,
 * the Cookie header, request and trace ids, the client address and the
 * raw body.  Everything else happens here, so that any front end and
 * pg_regress see the same contract:
 *
 *	1. the route of method and path (httproute.c; 404, 405);
 *	2. the tenant the request addresses: X-Tenant (slug or id), else the
 *	   subdomain of Host under mandant.http_base_domain (404 when unknown);
 *	3. unless the route is public, the bearer token, checked by
 *	   mandant.authenticate(), which sets tenant, user and scopes; a token
 *	   of another tenant than the one addressed, or without the route's
 *	   scope, is refused (401, 403);
 *	4. the arguments of the route's function from the path parameters, the
 *	   query string and the JSON body, by camelCase name and declared type
 *	   (httpargs.c; 400 with one entry per field);
 *	5. the call, through SPI as the calling role (so EXECUTE and row level
 *	   security apply), with a plan kept per route and set of arguments
 *	   (httpinvoke.c);
 *	   the settings the function changes are undone when it returns, and
 *	   a call that creates the session's schema of temporary objects fails:
 *	   the gateway's session serves the next tenant's request;
 *	6. the envelope (httpanswer.c), with the rows' keys in camelCase and
 *	   page, pageSize and total for paginated routes.
 *
 * Steps 2 to 5 run in a subtransaction: an error anywhere (a refused
 * token, a check violation, a statement timeout) rolls back what the
 * request wrote and becomes the answer of its SQLSTATE.  A request is its
 * own transaction: http_call refuses to run inside a transaction block, so
 * the context it sets ends with the request, and it refuses trusted roles
 * (mandant_service, mandant_admin, superusers): tenant, user and scopes
 * come only from the token, never from the gateway's own rights.
 *
 * A request or trace id that mandant's settings refuse (control
 * characters, too long) is replaced by a new id, resp. dropped.
 *
 * Requests carry credentials (tokens, passwords in a login's body), so the
 * call runs with log_min_error_statement = panic: no STATEMENT line of it
 * reaches the server log.  Times in answers are UTC (TimeZone is UTC for
 * the call).
 *
 * Copyright (c) 2026, the mandant developers
 *
 * IDENTIFICATION
 *		extension/httpcall.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "funcapi.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/guc.h"
#include "utils/jsonb.h"
#include "utils/memutils.h"
#include "utils/resowner.h"
#include "utils/uuid.h"

#include "mandant.h"
#include "http.h"

PG_FUNCTION_INFO_V1(mandant_http_call);

static char *http_base_domain = NULL;
static int	http_per_address = 600;
static int	http_per_tenant = 6000;
static int	http_sign_ups = 5;
static int	http_call_depth = 0;

/* The answer being built. */
typedef struct HttpAnswer
{
	int			status;
	char	   *body;
	JsonbParseState *headers;
	char	   *route;
	pg_uuid_t  *tenant;
} HttpAnswer;

/*
 * MandantDefineHttpVariables defines the gateway's settings: the base
 * domain of tenants' subdomains, the request limits per address and per
 * tenant, and the sign-ups per address.
 */
void
MandantDefineHttpVariables(void)
{
	DefineCustomStringVariable("mandant.http_base_domain",
							   "Domain under which the HTTP gateway finds tenants by subdomain.",
							   "With example.com, a request to acme.example.com addresses tenant acme.",
							   &http_base_domain, "", PGC_USERSET, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("mandant.http_requests_per_address",
							"Requests per minute the HTTP gateway answers for one client address (0: no limit).",
							"Past it the gateway answers 429 RATE_LIMITED with Retry-After.",
							&http_per_address, 600, 0, INT_MAX, PGC_SUSET, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("mandant.http_requests_per_tenant",
							"Requests per minute the HTTP gateway answers for one tenant (0: no limit).",
							"Past it the gateway answers 429 RATE_LIMITED with Retry-After.",
							&http_per_tenant, 6000, 0, INT_MAX, PGC_SUSET, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("mandant.sign_ups_per_address",
							"Self-service sign-ups (POST /api/v1/tenants) per hour from one client address.",
							NULL, &http_sign_ups, 5, 1, INT_MAX, PGC_SUSET, 0, NULL, NULL, NULL);
}

/* AddHeader adds a response header (lower-case name). */
static void
AddHeader(HttpAnswer *answer, const char *name, const char *value)
{
	MandantPushTextPair(&answer->headers, name, value);
}

/* Refuse sets the answer to an error envelope. */
static void
Refuse(HttpAnswer *answer, const MandantHttpRequest *req, int status, const char *code,
	   const char *message, List *field_errors, const char *hint)
{
	answer->status = status;
	answer->body = MandantHttpEnvelope(false, NULL, code, message, field_errors, NULL, hint,
									   req->request_id, 0, 0, 0);
}

/*
 * OverRateLimit counts the request against max per minute for key and,
 * past it, answers 429 with Retry-After; returns whether it did.
 */
static bool
OverRateLimit(HttpAnswer *answer, const MandantHttpRequest *req, const char *key, int max,
			  const char *what)
{
	int64		retry;

	if (max <= 0)
		return false;
	retry = MandantHttpRateLimit(key, max);
	if (retry == 0)
		return false;
	AddHeader(answer, "retry-after", psprintf(INT64_FORMAT, retry));
	Refuse(answer, req, 429, "RATE_LIMITED", psprintf("too many requests %s", what), NIL,
		   psprintf("At most %d requests per minute; retry after " INT64_FORMAT " seconds.",
					max, retry));
	return true;
}

/*
 * RequestText returns the string member key of the request, or NULL when
 * it is absent or null.
 */
static char *
RequestText(Jsonb *request, const char *key)
{
	JsonbValue	k;
	JsonbValue *v;

	k.type = jbvString;
	k.val.string.val = (char *) key;
	k.val.string.len = strlen(key);
	v = findJsonbValueFromContainer(&request->root, JB_FOBJECT, &k);
	if (v == NULL || v->type == jbvNull)
		return NULL;
	if (v->type != jbvString)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("request member \"%s\" must be a string", key),
				 errdetail("mandant.http_call() received a JSON %s.",
						   v->type == jbvBinary ? "array or object" : "number or boolean"),
				 errhint("The front end passes every member of the request as a string.")));
	return pnstrdup(v->val.string.val, v->val.string.len);
}

/* NewRequestId returns a random (version 4) uuid as text. */
static char *
NewRequestId(void)
{
	pg_uuid_t	id;

	MandantStrongRandom(id.data, UUID_LEN);
	id.data[6] = (id.data[6] & 0x0f) | 0x40;
	id.data[8] = (id.data[8] & 0x3f) | 0x80;
	return MandantUuidText(&id);
}

/* ParseRequest reads the request object. */
static void
ParseRequest(Jsonb *request, text *body, MandantHttpRequest *req)
{
	if (!JB_ROOT_IS_OBJECT(request))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("request must be a JSON object"),
				 errdetail("mandant.http_call() received a JSON %s.",
						   JB_ROOT_IS_SCALAR(request) ? "scalar" : "array"),
				 errhint("Pass {\"method\": \"GET\", \"path\": \"/v1/...\", ...}; see README, \"HTTP gateway\".")));
	req->method = RequestText(request, "method");
	req->path = RequestText(request, "path");
	if (req->method == NULL || req->path == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("request must have a method and a path"),
				 errdetail("mandant.http_call() received method %s and path %s.",
						   req->method ? "given" : "null", req->path ? "given" : "null"),
				 errhint("Pass {\"method\": \"GET\", \"path\": \"/v1/...\", ...}.")));
	req->query = RequestText(request, "query");
	req->host = RequestText(request, "host");
	req->tenant = RequestText(request, "tenant");
	req->token = RequestText(request, "token");
	req->cookie = RequestText(request, "cookie");
	req->request_id = RequestText(request, "requestId");
	req->trace_id = RequestText(request, "traceId");
	req->client_ip = RequestText(request, "clientIp");
	req->if_match = RequestText(request, "ifMatch");
	req->body = body;
	if (req->request_id == NULL || req->request_id[0] == '\0')
		req->request_id = NewRequestId();
}

/*
 * SplitPath cuts the path into decoded segments; returns false when it is
 * not an absolute path of well-formed segments.
 */
static bool
SplitPath(const char *path, char ***segments, int *nsegments)
{
	List	   *parts = NIL;
	const char *p = path;
	ListCell   *lc;
	int			i = 0;

	if (path[0] != '/')
		return false;
	while (*p == '/')
	{
		const char *start = p + 1;
		const char *end = strchr(start, '/');
		size_t		len = end ? (size_t) (end - start) : strlen(start);
		char	   *segment;

		if (len == 0 && end == NULL)
			break;				/* one trailing slash */
		segment = MandantPercentDecode(start, len, false);
		if (segment == NULL || strchr(segment, '/') != NULL)
			return false;
		parts = lappend(parts, segment);
		p = start + len;
	}
	*nsegments = list_length(parts);
	*segments = palloc(sizeof(char *) * Max(*nsegments, 1));
	foreach(lc, parts)
		(*segments)[i++] = lfirst(lc);
	return true;
}

/*
 * FindTenant looks up the tenant a request addresses by slug or by id.
 */
static bool
FindTenant(const char *name, MandantHttpTenant *tenant)
{
	MandantIndexKey key;
	Datum		value;
	bool		isnull;

	if (MandantParseUuid(name, &tenant->id))
	{
		const char *column = "slug";

		key.value = UUIDPGetDatum(&tenant->id);
		key.eqproc = F_UUID_EQ;
		key.isnull = false;
		if (!MandantFetchByIndex("tenant", "tenant_pkey", 1, &key, 1, &column, &value, &isnull))
			return false;
		tenant->slug = TextDatumGetCString(value);
	}
	else
	{
		const char *column = "id";

		key.value = CStringGetTextDatum(name);
		key.eqproc = F_TEXTEQ;
		key.isnull = false;
		if (!MandantFetchByIndex("tenant", "tenant_slug_key", 1, &key, 1, &column, &value, &isnull))
			return false;
		memcpy(&tenant->id, DatumGetUUIDP(value), sizeof(pg_uuid_t));
		tenant->slug = pstrdup(name);
	}
	return true;
}

/*
 * AddressedTenant returns the name of the tenant the request addresses:
 * X-Tenant, else the subdomain of Host under the base domain; NULL when
 * it addresses none.
 */
static char *
AddressedTenant(const MandantHttpRequest *req)
{
	char	   *host;
	char	   *colon;
	size_t		hostlen;
	size_t		baselen = http_base_domain ? strlen(http_base_domain) : 0;

	if (req->tenant != NULL && req->tenant[0] != '\0')
		return req->tenant;
	if (req->host == NULL || baselen == 0)
		return NULL;
	host = pstrdup(req->host);
	colon = strrchr(host, ':');
	if (colon != NULL && strchr(host, ']') == NULL)
		*colon = '\0';
	for (char *c = host; *c; c++)
		*c = pg_ascii_tolower((unsigned char) *c);
	hostlen = strlen(host);
	if (hostlen <= baselen + 1 || host[hostlen - baselen - 1] != '.' ||
		pg_strcasecmp(host + hostlen - baselen, http_base_domain) != 0)
		return NULL;
	host[hostlen - baselen - 1] = '\0';
	return host;
}

/*
 * MandantHttpGuarded runs fn(arg) in a subtransaction and returns NULL, or the error
 * it raised (which it rolled back).
 */
ErrorData *
MandantHttpGuarded(void (*fn) (void *), void *arg)
{
	MemoryContext cxt = CurrentMemoryContext;
	ResourceOwner owner = CurrentResourceOwner;
	ErrorData  *volatile edata = NULL;

	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(cxt);
	PG_TRY();
	{
		fn(arg);
		ReleaseCurrentSubTransaction();
	}
	PG_CATCH();
	{
		MemoryContextSwitchTo(cxt);
		edata = CopyErrorData();
		FlushErrorState();
		RollbackAndReleaseCurrentSubTransaction();
	}
	PG_END_TRY();
	MemoryContextSwitchTo(cxt);
	CurrentResourceOwner = owner;
	return edata;
}

/*
 * Dispatch answers the request; refusals it finds itself become answers,
 * errors of what it calls are raised.
 */
static void
Dispatch(const MandantHttpRequest *req, HttpAnswer *answer)
{
	char	  **segments;
	int			nsegments;
	char	  **params = NULL;
	char	   *allowed = NULL;
	MandantHttpRoute *route;
	char	   *addressed;
	MandantHttpTenant	tenant;
	bool		has_tenant = false;
	MandantHttpArgs   *args;
	Jsonb	   *data;
	int64		total;
	char	   *refresh = NULL;

	if (req->client_ip != NULL &&
		OverRateLimit(answer, req, psprintf("address:%s", req->client_ip), http_per_address,
					  "from this address"))
		return;
	if (!SplitPath(req->path, &segments, &nsegments))
	{
		Refuse(answer, req, 400, "VALIDATION_ERROR", "the path is malformed",
			   list_make1(MandantFieldError("path", "must be an absolute path of percent-encoded UTF-8 segments")),
			   NULL);
		return;
	}
	route = MandantHttpMatch(req->method, segments, nsegments, &params, &allowed);
	if (route == NULL && allowed != NULL)
	{
		AddHeader(answer, "allow", allowed);
		Refuse(answer, req, 405, "METHOD_NOT_ALLOWED",
			   psprintf("%s is not allowed here", req->method), NIL,
			   psprintf("This path answers %s.", allowed));
		return;
	}
	if (route == NULL)
	{
		Refuse(answer, req, 404, "NOT_FOUND", "no route matches the path", NIL,
			   "The routes are listed in mandant.http_route.");
		return;
	}
	answer->route = pstrdup(route->label);
	if (route->broken != NULL)
	{
		ereport(LOG,
				(errmsg("mandant.http_call: route %s cannot be served: %s", route->label, route->broken),
				 errhidestmt(true)));
		Refuse(answer, req, 500, "INTERNAL_ERROR", "internal error", NIL, NULL);
		return;
	}

	/* the tenant addressed */
	addressed = AddressedTenant(req);
	if (addressed != NULL)
	{
		if (!FindTenant(addressed, &tenant))
		{
			Refuse(answer, req, 404, "TENANT_NOT_FOUND", "the tenant does not exist", NIL,
				   "Address the tenant by its slug (X-Tenant or subdomain).");
			return;
		}
		has_tenant = true;
		answer->tenant = palloc(sizeof(pg_uuid_t));
		memcpy(answer->tenant, &tenant.id, sizeof(pg_uuid_t));
	}

	/* the token */
	if (!route->public)
	{
		const pg_uuid_t *current;

		if (req->token == NULL)
		{
			AddHeader(answer, "www-authenticate", "Bearer");
			Refuse(answer, req, 401, "TOKEN_INVALID", "a bearer token is required", NIL,
				   "Sign in (POST to the login route) and send Authorization: Bearer <accessToken>.");
			return;
		}
		(void) MandantAuthenticate(cstring_to_text(req->token), NULL);
		current = MandantCurrentTenant();
		if (has_tenant && (current == NULL || memcmp(current->data, tenant.id.data, UUID_LEN) != 0))
		{
			Refuse(answer, req, 403, "FORBIDDEN", "the token is not valid for this tenant", NIL,
				   "Use a token issued for the tenant the request addresses.");
			return;
		}
		if (current != NULL)
		{
			answer->tenant = palloc(sizeof(pg_uuid_t));
			memcpy(answer->tenant, current, sizeof(pg_uuid_t));
		}
		if (route->scope != 0 && (MandantCurrentScopes() & route->scope) == 0)
		{
			Refuse(answer, req, 403, "FORBIDDEN",
				   psprintf("%s requires scope %s", route->label, MandantScopeName(route->scope)),
				   NIL, "Sign in with a role that has the scope.");
			return;
		}
	}

	if (answer->tenant != NULL &&
		OverRateLimit(answer, req, psprintf("tenant:%s", MandantUuidText(answer->tenant)),
					  http_per_tenant, "for this tenant"))
		return;

	/* the arguments */
	args = palloc0(sizeof(MandantHttpArgs));
	MandantHttpCollectArgs(route, req, params, has_tenant ? &tenant : NULL, args);
	if (args->errors != NIL)
	{
		Refuse(answer, req, 400, "VALIDATION_ERROR", "the request's parameters are invalid",
			   args->errors, NULL);
		return;
	}

	/* the call */
	data = MandantHttpCallRoute(route, args, &total);
	answer->status = 200;
	if (!route->envelope)
	{
		/* a document of its own (JWKS, OpenAPI): the result as it is */
		answer->body = data ? JsonbToCString(NULL, &data->root, VARSIZE(data)) : pstrdup("null");
		return;
	}
	if (data != NULL)
		data = MandantCamelizeResult(data, &refresh);
	if (refresh != NULL && refresh[0] != '\0')
		AddHeader(answer, "set-cookie",
				  psprintf(HTTP_REFRESH_COOKIE "=%s; " HTTP_REFRESH_COOKIE_ATTRIBUTES, refresh));
	else if (refresh != NULL)
		AddHeader(answer, "set-cookie",
				  HTTP_REFRESH_COOKIE "=; Max-Age=0; " HTTP_REFRESH_COOKIE_ATTRIBUTES);
	answer->body = MandantHttpEnvelope(true, data, NULL, NULL, NIL, NULL, NULL, req->request_id,
									   args->page, args->page_size, total);
}

/* Dispatch, run by Guarded. */
typedef struct DispatchCall
{
	const MandantHttpRequest *req;
	HttpAnswer *answer;
} DispatchCall;

static void
RunDispatch(void *arg)
{
	DispatchCall *call = arg;

	Dispatch(call->req, call->answer);
}

/*
 * ErrorAnswer turns an error raised while answering into the answer of its
 * SQLSTATE.
 */
static void
ErrorAnswer(const MandantHttpRequest *req, HttpAnswer *answer, ErrorData *edata)
{
	int			status;
	const char *code;
	bool		show;

	MandantHttpErrorStatus(edata->sqlerrcode, &status, &code, &show);
	answer->status = status;
	if (status == 401)
		AddHeader(answer, "www-authenticate", "Bearer");
	if (!show)
		ereport(LOG,
				(errmsg("mandant.http_call: %s answered %d %s (request %s)",
						answer->route ? answer->route : "the request", status, code, req->request_id),
				 errdetail("SQLSTATE %s: %s", unpack_sql_state(edata->sqlerrcode), edata->message),
				 errhidestmt(true)));
	answer->body = MandantHttpEnvelope(false, NULL, code,
									   show ? edata->message
									   : status == 503 ? "the request took too long" : "internal error",
									   NIL, show ? edata->detail : NULL, show ? edata->hint : NULL,
									   req->request_id, 0, 0, 0);
}

/*
 * CheckCaller refuses a trusted caller and a transaction block.
 */
static void
CheckCaller(void)
{
	if (MandantCallerIsTrusted())
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("mandant.http_call() must not run as a trusted role"),
				 errdetail("Role \"%s\" has the privileges of mandant_service or mandant_admin; a request's rights must come from its token alone.",
						   GetUserNameFromId(GetUserId(), false)),
				 errhint("Let the gateway log in as a role that is a member of mandant_gateway only.")));
	if (IsTransactionBlock())
		ereport(ERROR,
				(errcode(ERRCODE_ACTIVE_SQL_TRANSACTION),
				 errmsg("mandant.http_call() cannot run inside a transaction block"),
				 errdetail("A request is its own transaction: what it writes commits or rolls back with its answer."),
				 errhint("Call it as a statement of its own, outside BEGIN ... COMMIT.")));
	if (http_call_depth > 0)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("mandant.http_call() cannot be nested"),
				 errdetail("A route's function called mandant.http_call() again."),
				 errhint("Call the other function directly.")));
}

/*
 * mandant.http_call(request jsonb, request_body text) returns (status,
 * headers, body, route, tenant_id): answers one HTTP request.
 */
Datum
mandant_http_call(PG_FUNCTION_ARGS)
{
	MandantHttpRequest req = {0};
	HttpAnswer	answer = {0};
	MemoryContext cxt = CurrentMemoryContext;
	ResourceOwner owner = CurrentResourceOwner;
	TupleDesc	desc;
	Datum		values[5];
	bool		nulls[5] = {false, false, false, false, false};
	JsonbValue *headers;
	ErrorData  *volatile edata;
	int			nestlevel;

	/*
	 * Settings for the request, first of all (a refusal below must not log
	 * the statement either): no statement in the log, UTC, its ids.
	 */
	nestlevel = NewGUCNestLevel();
	(void) set_config_option("log_min_error_statement", "panic", PGC_SUSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("request must not be null"),
				 errdetail("mandant.http_call() was called without a request."),
				 errhint("Pass {\"method\": \"GET\", \"path\": \"/v1/...\", ...}.")));
	if (get_call_result_type(fcinfo, NULL, &desc) != TYPEFUNC_COMPOSITE || desc->natts != 5)
		elog(ERROR, "mandant.http_call() must return a record of five columns");
	CheckCaller();
	ParseRequest(PG_GETARG_JSONB_P(0), PG_ARGISNULL(1) ? NULL : PG_GETARG_TEXT_PP(1), &req);

	(void) set_config_option("TimeZone", "UTC", PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
	if (set_config_option(MANDANT_GUC_REQUEST_ID, req.request_id, PGC_USERSET, PGC_S_SESSION,
						  GUC_ACTION_LOCAL, true, DEBUG5, false) <= 0)
	{
		/* an id the setting refuses (control characters, too long): a new one */
		req.request_id = NewRequestId();
		(void) set_config_option(MANDANT_GUC_REQUEST_ID, req.request_id, PGC_USERSET, PGC_S_SESSION,
								 GUC_ACTION_LOCAL, true, 0, false);
	}
	if (req.trace_id != NULL)				/* a refused trace id is dropped */
		(void) set_config_option(MANDANT_GUC_TRACE_ID, req.trace_id, PGC_USERSET, PGC_S_SESSION,
								 GUC_ACTION_LOCAL, true, DEBUG5, false);
	MandantAssignContext(NULL, NULL, 0);

	(void) pushJsonbValue(&answer.headers, WJB_BEGIN_OBJECT, NULL);
	edata = NULL;
	http_call_depth++;
	PG_TRY();
	{
		DispatchCall call = {&req, &answer};

		edata = MandantHttpGuarded(RunDispatch, &call);
	}
	PG_FINALLY();
	{
		http_call_depth--;
	}
	PG_END_TRY();
	MemoryContextSwitchTo(cxt);
	CurrentResourceOwner = owner;
	if (edata != NULL)
		ErrorAnswer(&req, &answer, edata);
	AtEOXact_GUC(true, nestlevel);

	headers = pushJsonbValue(&answer.headers, WJB_END_OBJECT, NULL);
	values[0] = Int32GetDatum(answer.status);
	values[1] = JsonbPGetDatum(JsonbValueToJsonb(headers));
	values[2] = CStringGetTextDatum(answer.body);
	if (answer.route != NULL)
		values[3] = CStringGetTextDatum(answer.route);
	else
		nulls[3] = true;
	if (answer.tenant != NULL)
		values[4] = UUIDPGetDatum(answer.tenant);
	else
		nulls[4] = true;
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(BlessTupleDesc(desc), values, nulls)));
}
