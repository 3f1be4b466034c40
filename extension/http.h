/*-------------------------------------------------------------------------
 *
 * http.h
 *		Declarations shared by the files of the HTTP dispatcher
 *		(httproute.c, httpargs.c, httpinvoke.c, httpanswer.c, httpcall.c).
 *
 * Copyright (c) 2026, the mandant developers
 *
 * IDENTIFICATION
 *		extension/http.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef MANDANT_HTTP_H
#define MANDANT_HTTP_H

#include "executor/spi.h"
#include "lib/stringinfo.h"
#include "utils/jsonb.h"
#include "utils/uuid.h"

/* A route's function takes at most this many IN arguments (a bit mask). */
#define HTTP_MAX_ARGS			64

/* Pagination: ?page=1&pageSize=25, at most 100 per page. */
#define HTTP_DEFAULT_PAGE_SIZE	25
#define HTTP_MAX_PAGE_SIZE		100

/* Where an argument's value comes from. */
typedef enum MandantHttpArgSource
{
	HTTP_ARG_CLIENT,			/* path, query or body */
	HTTP_ARG_CLIENT_IP,			/* client_ip: the request's client address */
	HTTP_ARG_TENANT_SLUG,		/* tenant_slug: the tenant the request addresses */
	HTTP_ARG_ACCESS_TOKEN,		/* access_token: the bearer token */
	HTTP_ARG_REFRESH_TOKEN		/* refresh_token: the refresh cookie */
} MandantHttpArgSource;

typedef struct MandantHttpArg
{
	char	   *name;			/* as declared, snake_case */
	char	   *camel;			/* its key in JSON and query strings */
	Oid			type;
	bool		has_default;
	MandantHttpArgSource source;
} MandantHttpArg;

/* A prepared call of a route's function, for one set of given arguments. */
typedef struct MandantHttpPlan
{
	uint64		given;			/* bit i: argument i is passed */
	SPIPlanPtr	plan;
} MandantHttpPlan;

typedef struct MandantHttpRoute
{
	char	   *method;
	char	   *path;			/* the template, e.g. /v1/notes/{noteId} */
	char	   *label;			/* "GET /v1/notes/{noteId}" */
	int			nsegments;
	char	  **segments;		/* literal text, or the parameter's name */
	bool	   *is_param;
	Oid			function;
	int			scope;			/* the scope bit it requires, or 0 */
	bool		public;
	bool		paginated;
	bool		envelope;		/* false: the result is the body (JWKS, OpenAPI) */
	char	   *broken;			/* why it cannot be served, or NULL */
	char	   *qualified_name;
	bool		retset;
	bool		returns_void;
	int			nargs;
	MandantHttpArg *args;
	int			nplans;
	MandantHttpPlan *plans;
} MandantHttpRoute;

/* The cookie that carries the refresh token, and where it is sent. */
#define HTTP_REFRESH_COOKIE		"mandant_refresh"
#define HTTP_REFRESH_COOKIE_ATTRIBUTES	"Path=/api/v1/auth; HttpOnly; Secure; SameSite=Strict"

/* One key and value of a query string. */
typedef struct MandantHttpPair
{
	char	   *key;
	char	   *value;
} MandantHttpPair;

/* One field the client got wrong, for error.details. */
typedef struct MandantHttpFieldError
{
	const char *field;
	const char *message;
} MandantHttpFieldError;

/* The request, as the front end describes it. */
typedef struct MandantHttpRequest
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
} MandantHttpRequest;

/* The tenant a request addresses. */
typedef struct MandantHttpTenant
{
	pg_uuid_t	id;
	char	   *slug;
} MandantHttpTenant;

/* The arguments of one call. */
typedef struct MandantHttpArgs
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
} MandantHttpArgs;

/* httproute.c */
extern char *MandantSnakeToCamel(const char *name);
extern MemoryContext MandantHttpRouteContext(void);
extern MandantHttpRoute *MandantHttpMatch(const char *method, char **segments,
										  int nsegments, char ***params,
										  char **allowed);

/* httpargs.c */
extern char *MandantPercentDecode(const char *text, size_t len, bool plus_is_space);
extern List *MandantParseQuery(const char *query, List **errors);
extern MandantHttpFieldError *MandantFieldError(const char *field, const char *fmt,...) pg_attribute_printf(2, 3);
extern void MandantHttpCollectArgs(const MandantHttpRoute *route, const MandantHttpRequest *req,
								   char **params, const MandantHttpTenant *tenant,
								   MandantHttpArgs *args);

/* httpinvoke.c */
extern Jsonb *MandantHttpCallRoute(MandantHttpRoute *route, MandantHttpArgs *args, int64 *total);
extern bool MandantJsonToDatum(const JsonbValue *value, Oid type, bool from_text,
							   Datum *datum, bool *isnull, const char **problem);

/* httpcall.c */
extern ErrorData *MandantHttpGuarded(void (*fn) (void *), void *arg);

/* httpanswer.c */
extern void MandantHttpErrorStatus(int sqlerrcode, int *status, const char **code,
								   bool *show_message);
extern Jsonb *MandantCamelizeResult(Jsonb *data, char **refresh_token);
extern char *MandantHttpEnvelope(bool success, Jsonb *data, const char *code,
								 const char *message, List *field_errors,
								 const char *detail, const char *hint,
								 const char *request_id, int64 page, int64 page_size,
								 int64 total);

#endif							/* MANDANT_HTTP_H */
