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
 *	   security apply), with a plan kept per route and set of arguments;
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

/* The cookie that carries the refresh token, and where it is sent. */
#define HTTP_REFRESH_COOKIE		"mandant_refresh"
#define HTTP_REFRESH_COOKIE_ATTRIBUTES	"Path=/api/v1/auth; HttpOnly; Secure; SameSite=Strict"

static char *http_base_domain = NULL;
static int	http_per_address = 600;
static int	http_per_tenant = 6000;
static int	http_sign_ups = 5;
static int	http_call_depth = 0;

/* The request, as the front end describes it. */
typedef struct HttpRequest
{
	char	   *method;
	char	   *path;
	char	   *query;
	char	   *host;
	char	   *tenant;			/* X-Tenant */
	char	   *token;
	char	   *cookie;
	char	   *request_id;
	char	   *trace_id;
	char	   *client_ip;
	char	   *if_match;
	text	   *body;
} HttpRequest;

/* The answer being built. */
typedef struct HttpAnswer
{
	int			status;
	char	   *body;
	JsonbParseState *headers;
	char	   *route;
	pg_uuid_t  *tenant;
} HttpAnswer;

/* The tenant a request addresses. */
typedef struct HttpTenant
{
	pg_uuid_t	id;
	char	   *slug;
} HttpTenant;

/*
 * MandantDefineHttpVariables defines mandant.http_base_domain.
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
Refuse(HttpAnswer *answer, const HttpRequest *req, int status, const char *code,
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
OverRateLimit(HttpAnswer *answer, const HttpRequest *req, const char *key, int max,
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
ParseRequest(Jsonb *request, text *body, HttpRequest *req)
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
 * CookieValue returns the value of cookie name in a Cookie header, or NULL.
 */
static char *
CookieValue(const char *header, const char *name)
{
	size_t		namelen = strlen(name);
	const char *p = header;

	while (p != NULL && *p != '\0')
	{
		const char *end;

		while (*p == ' ' || *p == ';')
			p++;
		end = strchr(p, ';');
		if (strncmp(p, name, namelen) == 0 && p[namelen] == '=')
		{
			const char *value = p + namelen + 1;

			return end ? pnstrdup(value, end - value) : pstrdup(value);
		}
		p = end;
	}
	return NULL;
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
FindTenant(const char *name, HttpTenant *tenant)
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
AddressedTenant(const HttpRequest *req)
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
 * Guarded runs fn(arg) in a subtransaction and returns NULL, or the error
 * it raised (which it rolled back).
 */
static ErrorData *
Guarded(void (*fn) (void *), void *arg)
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

/* One argument's conversion, run by Guarded. */
typedef struct Conversion
{
	JsonbValue *value;
	Oid			type;
	bool		from_text;
	Datum		datum;
	bool		isnull;
	const char *problem;
} Conversion;

static void
Convert(void *arg)
{
	Conversion *c = arg;

	(void) MandantJsonToDatum(c->value, c->type, c->from_text, &c->datum, &c->isnull,
							  &c->problem);
}

/* Parsing the body, run by Guarded. */
typedef struct BodyParse
{
	text	   *body;
	Jsonb	   *json;
} BodyParse;

static void
ParseBody(void *arg)
{
	BodyParse  *b = arg;

	b->json = DatumGetJsonbP(DirectFunctionCall1(jsonb_in,
												 CStringGetDatum(text_to_cstring(b->body))));
}

/* The arguments of one call. */
typedef struct CallArgs
{
	JsonbValue *given[HTTP_MAX_ARGS];	/* value, or NULL */
	bool		from_text[HTTP_MAX_ARGS];
	const char *key[HTTP_MAX_ARGS];	/* where it was given */
	Datum		values[HTTP_MAX_ARGS + 2];
	char		nulls[HTTP_MAX_ARGS + 2];
	Oid			types[HTTP_MAX_ARGS + 2];
	int			nparams;
	uint64		mask;
	int64		page;
	int64		page_size;
	bool		page_given;
	bool		page_size_given;
	List	   *errors;
} CallArgs;

/* FindArg returns the index of the route's argument with key, or -1. */
static int
FindArg(const MandantHttpRoute *route, const char *key)
{
	for (int i = 0; i < route->nargs; i++)
		if (strcmp(route->args[i].camel, key) == 0 || strcmp(route->args[i].name, key) == 0)
			return i;
	return -1;
}

/* StringValue wraps text as a JSON string value. */
static JsonbValue *
StringValue(const char *text)
{
	JsonbValue *v = palloc(sizeof(JsonbValue));

	v->type = jbvString;
	v->val.string.val = (char *) text;
	v->val.string.len = strlen(text);
	return v;
}

/*
 * GiveArg records the value of key for the route's argument, or the
 * reason it cannot take one.
 */
static void
GiveArg(const MandantHttpRoute *route, CallArgs *args, const char *key, JsonbValue *value,
		bool from_text)
{
	int			i = FindArg(route, key);

	if (i < 0)
		args->errors = lappend(args->errors,
							   MandantFieldError(key, "is not a parameter of %s", route->label));
	else if (route->args[i].source != HTTP_ARG_CLIENT)
		args->errors = lappend(args->errors,
							   MandantFieldError(key, "is set by the gateway from the request, not by the client"));
	else if (args->given[i] != NULL)
		args->errors = lappend(args->errors,
							   MandantFieldError(key, "is given twice (path, query or body)"));
	else
	{
		args->given[i] = value;
		args->from_text[i] = from_text;
		args->key[i] = key;
	}
}

/*
 * ReadPageParameter reads page or pageSize of a paginated route.
 */
static void
ReadPageParameter(CallArgs *args, const char *key, const char *value, int64 *out, int64 max,
				  bool *given)
{
	char	   *end;
	long		n;

	if (*given)
	{
		args->errors = lappend(args->errors, MandantFieldError(key, "is given twice"));
		return;
	}
	*given = true;
	errno = 0;
	n = strtol(value, &end, 10);
	if (errno != 0 || *end != '\0' || end == value || n < 1 || n > max)
		args->errors = lappend(args->errors,
							   MandantFieldError(key, "must be an integer from 1 to " INT64_FORMAT, max));
	else
		*out = n;
}

/*
 * CollectArgs gathers the arguments of the call from the path, the query
 * string, the body and the request, and converts them.
 */
static void
CollectArgs(const MandantHttpRoute *route, const HttpRequest *req, char **params,
			const HttpTenant *tenant, CallArgs *args)
{
	List	   *pairs;
	ListCell   *lc;

	args->page = 1;
	args->page_size = route->paginated ? HTTP_DEFAULT_PAGE_SIZE : 0;

	/* path parameters */
	for (int s = 0; s < route->nsegments; s++)
		if (route->is_param[s])
			GiveArg(route, args, route->segments[s], StringValue(params[s]), true);

	/* query string */
	pairs = MandantParseQuery(req->query, &args->errors);
	foreach(lc, pairs)
	{
		MandantHttpPair *pair = lfirst(lc);

		if (route->paginated && strcmp(pair->key, "page") == 0)
			ReadPageParameter(args, pair->key, pair->value, &args->page, PG_INT32_MAX,
							  &args->page_given);
		else if (route->paginated && strcmp(pair->key, "pageSize") == 0)
			ReadPageParameter(args, pair->key, pair->value, &args->page_size, HTTP_MAX_PAGE_SIZE,
							  &args->page_size_given);
		else
			GiveArg(route, args, pair->key, StringValue(pair->value), true);
	}

	/* body */
	if (req->body != NULL && VARSIZE_ANY_EXHDR(req->body) > 0)
	{
		BodyParse	parse = {req->body, NULL};
		ErrorData  *edata = Guarded(ParseBody, &parse);

		if (edata != NULL || !JB_ROOT_IS_OBJECT(parse.json))
		{
			/* nothing else can be said about the arguments */
			args->errors = list_make1(edata != NULL
									  ? MandantFieldError("body", "is not valid JSON: %s", edata->message)
									  : MandantFieldError("body", "must be a JSON object"));
			return;
		}
		else
		{
			JsonbIterator *it = JsonbIteratorInit(&parse.json->root);
			JsonbValue	v;
			JsonbIteratorToken token;
			char	   *key = NULL;

			while ((token = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
			{
				if (token == WJB_KEY)
					key = pnstrdup(v.val.string.val, v.val.string.len);
				else if (token == WJB_VALUE)
				{
					JsonbValue *copy = palloc(sizeof(JsonbValue));

					*copy = v;
					GiveArg(route, args, key, copy, false);
				}
			}
		}
	}

	/* If-Match: the version a conditional write expects */
	if (req->if_match != NULL)
	{
		int			i = FindArg(route, "expected_version");

		if (i >= 0 && route->args[i].source == HTTP_ARG_CLIENT && args->given[i] == NULL)
		{
			char	   *tag = req->if_match;
			size_t		len;

			if (strncmp(tag, "W/", 2) == 0)
				tag += 2;
			len = strlen(tag);
			if (len >= 2 && tag[0] == '"' && tag[len - 1] == '"')
				tag = pnstrdup(tag + 1, len - 2);
			args->given[i] = StringValue(tag);
			args->from_text[i] = true;
			args->key[i] = "If-Match";
		}
	}

	/* what the gateway fills in */
	for (int i = 0; i < route->nargs; i++)
	{
		const char *value = NULL;

		switch (route->args[i].source)
		{
			case HTTP_ARG_CLIENT:
				continue;
			case HTTP_ARG_CLIENT_IP:
				value = req->client_ip;
				break;
			case HTTP_ARG_TENANT_SLUG:
				value = tenant ? tenant->slug : NULL;
				break;
			case HTTP_ARG_ACCESS_TOKEN:
				value = req->token;
				break;
			case HTTP_ARG_REFRESH_TOKEN:
				value = req->cookie ? CookieValue(req->cookie, HTTP_REFRESH_COOKIE) : NULL;
				break;
		}
		if (value != NULL)
		{
			args->given[i] = StringValue(value);
			args->from_text[i] = true;
		}
		else if (!route->args[i].has_default)
		{
			/* the request has none: the function decides what NULL means */
			JsonbValue *null = palloc(sizeof(JsonbValue));

			null->type = jbvNull;
			args->given[i] = null;
			args->from_text[i] = false;
		}
		args->key[i] = route->args[i].camel;
	}

	/* missing ones, then the conversions */
	for (int i = 0; i < route->nargs; i++)
		if (args->given[i] == NULL && !route->args[i].has_default &&
			route->args[i].source == HTTP_ARG_CLIENT)
			args->errors = lappend(args->errors,
								   MandantFieldError(route->args[i].camel, "is required"));
	for (int i = 0; i < route->nargs; i++)
	{
		Conversion	c = {0};
		ErrorData  *edata;

		if (args->given[i] == NULL)
			continue;
		c.value = args->given[i];
		c.type = route->args[i].type;
		c.from_text = args->from_text[i];
		edata = Guarded(Convert, &c);
		if (edata != NULL)
			args->errors = lappend(args->errors, MandantFieldError(args->key[i], "%s", edata->message));
		else if (c.problem != NULL)
			args->errors = lappend(args->errors, MandantFieldError(args->key[i], "%s", c.problem));
		else
		{
			args->values[args->nparams] = c.datum;
			args->nulls[args->nparams] = c.isnull ? 'n' : ' ';
			args->types[args->nparams] = c.type;
			args->nparams++;
			args->mask |= UINT64CONST(1) << i;
		}
	}
}

/*
 * CallText writes the statement that calls the route's function with the
 * arguments of mask, and answers (data jsonb, total bigint).
 */
static char *
CallText(const MandantHttpRoute *route, uint64 mask)
{
	StringInfoData call;
	StringInfoData sql;
	int			param = 0;

	initStringInfo(&call);
	appendStringInfo(&call, "%s(", route->qualified_name);
	for (int i = 0; i < route->nargs; i++)
		if (mask & (UINT64CONST(1) << i))
		{
			param++;
			appendStringInfo(&call, "%s%s => $%d", param > 1 ? ", " : "",
							 quote_identifier(route->args[i].name), param);
		}
	appendStringInfoString(&call, ") AS t");

	initStringInfo(&sql);
	if (route->paginated)
		appendStringInfo(&sql,
						 "SELECT COALESCE(pg_catalog.jsonb_agg(s.x ORDER BY s.n)"
						 " FILTER (WHERE s.n OPERATOR(pg_catalog.>) $%d AND s.n OPERATOR(pg_catalog.<=) $%d),"
						 " '[]'::pg_catalog.jsonb), pg_catalog.count(*)"
						 " FROM (SELECT pg_catalog.to_jsonb(t) AS x, pg_catalog.row_number() OVER () AS n"
						 " FROM %s) s", param + 1, param + 2, call.data);
	else if (route->retset)
		appendStringInfo(&sql,
						 "SELECT COALESCE(pg_catalog.jsonb_agg(pg_catalog.to_jsonb(t)), '[]'::pg_catalog.jsonb),"
						 " pg_catalog.count(*) FROM %s", call.data);
	else if (route->returns_void)
		appendStringInfo(&sql, "SELECT NULL::pg_catalog.jsonb, 1::pg_catalog.int8 FROM %s", call.data);
	else
		appendStringInfo(&sql, "SELECT pg_catalog.to_jsonb(t), 1::pg_catalog.int8 FROM %s", call.data);
	return sql.data;
}

/*
 * CallPlan returns the kept plan of the route's call with the arguments
 * of mask, preparing it the first time.
 */
static SPIPlanPtr
CallPlan(MandantHttpRoute *route, CallArgs *args)
{
	SPIPlanPtr	plan;
	MemoryContext old;

	for (int p = 0; p < route->nplans; p++)
		if (route->plans[p].given == args->mask)
			return route->plans[p].plan;

	plan = SPI_prepare(CallText(route, args->mask), args->nparams, args->types);
	if (plan == NULL)
		elog(ERROR, "could not prepare the call of route %s: %s", route->label,
			 SPI_result_code_string(SPI_result));
	if (SPI_keepplan(plan) != 0)
		elog(ERROR, "could not keep the plan of route %s", route->label);
	old = MemoryContextSwitchTo(MandantHttpRouteContext());
	route->plans = route->nplans == 0 ? palloc(sizeof(MandantHttpPlan))
		: repalloc(route->plans, sizeof(MandantHttpPlan) * (route->nplans + 1));
	MemoryContextSwitchTo(old);
	route->plans[route->nplans].given = args->mask;
	route->plans[route->nplans].plan = plan;
	route->nplans++;
	return plan;
}

/*
 * CheckSessionUntouched undoes the settings the route's function changed
 * (SET, set_config(), SET ROLE: they would outlive the request in the
 * gateway's session and reach the next tenant's requests), and refuses a
 * call that gave the session a schema of temporary objects, which the
 * unqualified names of later calls would find first.
 */
static void
CheckSessionUntouched(const MandantHttpRoute *route, Oid temp_namespace, int guc_level)
{
	Oid			now_namespace;
	Oid			now_toast;

	AtEOXact_GUC(false, guc_level);
	GetTempNamespaceState(&now_namespace, &now_toast);
	if (now_namespace != temp_namespace)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("route %s created temporary objects", route->label),
				 errdetail("Function %s created a temporary object in the gateway's session, where it would outlive the request.",
						   route->qualified_name),
				 errhint("Keep the function's data in permanent tables: a route's function runs in the gateway's shared session.")));
}

/*
 * CallRoute runs the route's function and returns its result as jsonb
 * (NULL for nothing), with the number of rows in *total.
 */
static Jsonb *
CallRoute(MandantHttpRoute *route, CallArgs *args, int64 *total)
{
	MemoryContext cxt = CurrentMemoryContext;
	SPIPlanPtr	plan;
	Jsonb	   *data = NULL;
	bool		isnull;
	Datum		value;
	int			ret;
	Oid			temp_namespace;
	Oid			temp_toast;
	int			guc_level;

	if (route->paginated)
	{
		int64		offset = (args->page - 1) * args->page_size;

		args->values[args->nparams] = Int64GetDatum(offset);
		args->values[args->nparams + 1] = Int64GetDatum(offset + args->page_size);
		args->nulls[args->nparams] = ' ';
		args->nulls[args->nparams + 1] = ' ';
		args->types[args->nparams] = INT8OID;
		args->types[args->nparams + 1] = INT8OID;
		args->nparams += 2;
	}
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	plan = CallPlan(route, args);
	GetTempNamespaceState(&temp_namespace, &temp_toast);
	guc_level = NewGUCNestLevel();
	ret = SPI_execute_plan(plan, args->values, args->nulls, false, 1);
	CheckSessionUntouched(route, temp_namespace, guc_level);
	if (ret != SPI_OK_SELECT || SPI_processed != 1)
		elog(ERROR, "the call of route %s answered %s", route->label, SPI_result_code_string(ret));
	value = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
	if (!isnull)
	{
		MemoryContext old = MemoryContextSwitchTo(cxt);

		data = DatumGetJsonbPCopy(value);
		MemoryContextSwitchTo(old);
	}
	value = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull);
	*total = isnull ? 0 : DatumGetInt64(value);
	SPI_finish();
	return data;
}

/*
 * Dispatch answers the request; refusals it finds itself become answers,
 * errors of what it calls are raised.
 */
static void
Dispatch(const HttpRequest *req, HttpAnswer *answer)
{
	char	  **segments;
	int			nsegments;
	char	  **params = NULL;
	char	   *allowed = NULL;
	MandantHttpRoute *route;
	char	   *addressed;
	HttpTenant	tenant;
	bool		has_tenant = false;
	CallArgs   *args;
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
	args = palloc0(sizeof(CallArgs));
	CollectArgs(route, req, params, has_tenant ? &tenant : NULL, args);
	if (args->errors != NIL)
	{
		Refuse(answer, req, 400, "VALIDATION_ERROR", "the request's parameters are invalid",
			   args->errors, NULL);
		return;
	}

	/* the call */
	data = CallRoute(route, args, &total);
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
	const HttpRequest *req;
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
ErrorAnswer(const HttpRequest *req, HttpAnswer *answer, ErrorData *edata)
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
	HttpRequest req = {0};
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

		edata = Guarded(RunDispatch, &call);
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
