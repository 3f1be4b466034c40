/*-------------------------------------------------------------------------
 *
 * httproute.c
 *		The routes of the HTTP gateway: mandant.http_route, cached per
 *		backend, and the match of a request's method and path.
 *
 * A route maps a method and a path template ("/v1/notes/{noteId}") to a
 * function.  mandant.http_call() matches every request, so the routes and
 * what the dispatcher needs to know about each function (its IN arguments,
 * their names, types and defaults, whether it returns a set or nothing)
 * are loaded once per backend into one memory context.  The cache is
 * dropped when mandant.http_route changes (its statement trigger,
 * mandant.http_routes_changed(), sends a relcache invalidation that every
 * backend receives after commit) and when any function is redefined (a
 * syscache invalidation of pg_proc), and rebuilt at the next request.
 * Each route also keeps the plans of its calls (one per set of arguments
 * a request gave), which go with the cache.
 *
 * What a catalog row says is checked again here, not trusted: a route
 * whose function is gone, is no plain function, returns record without
 * OUT parameters, takes unnamed, variadic or polymorphic arguments, or
 * returns no set although it is paginated is loaded as broken, and the
 * dispatcher answers 500 for it (mandant.http_route() refuses all of
 * these when a route is registered).  A load that fails leaves no routes
 * and the cache invalid, so that the next request loads them again.
 *
 * Matching compares segment by segment; a literal segment beats a
 * parameter, so "/v1/notes/recent" wins over "/v1/notes/{noteId}".
 *
 * Copyright (c) 2026, the mandant developers
 *
 * IDENTIFICATION
 *		extension/httproute.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "catalog/namespace.h"
#include "catalog/pg_proc.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/syscache.h"

#include "mandant.h"
#include "http.h"

PG_FUNCTION_INFO_V1(mandant_http_routes_changed);
PG_FUNCTION_INFO_V1(mandant_camel_case);

static MemoryContext RouteContext = NULL;
static MandantHttpRoute *Routes = NULL;
static int	NumRoutes = 0;
static bool RoutesValid = false;
static Oid	route_relid = InvalidOid;

/* RouteRelid returns the oid of mandant.http_route. */
static Oid
RouteRelid(void)
{
	Oid			nsp = get_namespace_oid("mandant", false);
	Oid			relid = get_relname_relid("http_route", nsp);

	if (!OidIsValid(relid))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("mandant.http_route does not exist"),
				 errdetail("The schema of extension mandant is older than its library."),
				 errhint("Run ALTER EXTENSION mandant UPDATE.")));
	return relid;
}

/*
 * InvalidateRoutes forgets the routes when mandant.http_route changed, on a
 * full reset, or when a function was redefined.
 */
static void
InvalidateRoutes(Datum arg, Oid relid)
{
	if (relid == InvalidOid || relid == route_relid)
		RoutesValid = false;
}

static void
InvalidateRoutesOnProc(Datum arg, int cacheid, uint32 hashvalue)
{
	RoutesValid = false;
}

/*
 * mandant_http_routes_changed is the statement trigger of mandant.http_route:
 * every backend reloads its routes after commit.
 */
Datum
mandant_http_routes_changed(PG_FUNCTION_ARGS)
{
	MandantCheckTriggerCall(fcinfo, 0, -1, "mandant.http_routes_changed()", "a trigger",
							"It is attached to mandant.http_route; there is nothing to call.");
	CacheInvalidateRelcacheByRelid(RouteRelid());
	return PointerGetDatum(NULL);
}

/*
 * SnakeToCamel returns the JSON key of an argument: "note_id" -> "noteId".
 */
char *
MandantSnakeToCamel(const char *name)
{
	StringInfoData buf;
	bool		upper = false;

	initStringInfo(&buf);
	for (const char *p = name; *p; p++)
	{
		if (*p == '_' && buf.len > 0)
		{
			upper = true;
			continue;
		}
		appendStringInfoChar(&buf, upper ? pg_ascii_toupper((unsigned char) *p) : *p);
		upper = false;
	}
	return buf.data;
}

/*
 * mandant.camel_case(name text) returns text: MandantSnakeToCamel for SQL
 * (registration and the OpenAPI document name arguments as the dispatcher
 * does).  Internal.
 */
Datum
mandant_camel_case(PG_FUNCTION_ARGS)
{
	PG_RETURN_TEXT_P(cstring_to_text(MandantSnakeToCamel(text_to_cstring(PG_GETARG_TEXT_PP(0)))));
}

/*
 * ArgSource says where the dispatcher takes an argument from: most come
 * from the client; a few names are filled from the request itself and may
 * not be sent.
 */
static MandantHttpArgSource
ArgSource(const char *name)
{
	if (strcmp(name, "client_ip") == 0)
		return HTTP_ARG_CLIENT_IP;
	if (strcmp(name, "tenant_slug") == 0)
		return HTTP_ARG_TENANT_SLUG;
	if (strcmp(name, "access_token") == 0)
		return HTTP_ARG_ACCESS_TOKEN;
	if (strcmp(name, "refresh_token") == 0)
		return HTTP_ARG_REFRESH_TOKEN;
	return HTTP_ARG_CLIENT;
}

/*
 * LoadFunction fills in what the dispatcher needs to know about the
 * route's function, or says why the route cannot be served.
 */
static void
LoadFunction(MandantHttpRoute *route)
{
	HeapTuple	tuple;
	Form_pg_proc proc;
	Datum		names;
	Datum		modes;
	bool		isnull;
	bool		modes_null;
	Datum	   *name_datums = NULL;
	int			nnames = 0;
	Datum	   *mode_datums;
	char	   *mode_chars = NULL;
	int			nall;
	int			in = 0;

	tuple = SearchSysCache1(PROCOID, ObjectIdGetDatum(route->function));
	if (!HeapTupleIsValid(tuple))
	{
		route->broken = psprintf("function %u does not exist", route->function);
		return;
	}
	proc = (Form_pg_proc) GETSTRUCT(tuple);
	route->qualified_name = quote_qualified_identifier(get_namespace_name(proc->pronamespace),
													   NameStr(proc->proname));
	route->retset = proc->proretset;
	route->returns_void = proc->prorettype == VOIDOID;
	if (proc->prokind != PROKIND_FUNCTION)
		route->broken = "it is not a plain function";
	else if (proc->prorettype == RECORDOID &&
			 heap_attisnull(tuple, Anum_pg_proc_proallargtypes, NULL))
		route->broken = "it returns record without naming its columns";
	else if (proc->provariadic != InvalidOid)
		route->broken = "it is variadic";
	else if (route->paginated && !proc->proretset)
		route->broken = "it is paginated but does not return a set";
	else if (proc->pronargs > HTTP_MAX_ARGS)
		route->broken = "it takes too many arguments";
	if (route->broken)
	{
		ReleaseSysCache(tuple);
		return;
	}

	names = SysCacheGetAttr(PROCOID, tuple, Anum_pg_proc_proargnames, &isnull);
	if (!isnull)
		deconstruct_array(DatumGetArrayTypeP(names), TEXTOID, -1, false, TYPALIGN_INT,
						  &name_datums, NULL, &nnames);
	modes = SysCacheGetAttr(PROCOID, tuple, Anum_pg_proc_proargmodes, &modes_null);
	if (!modes_null)
	{
		ArrayType  *array = DatumGetArrayTypeP(modes);

		if (ARR_NDIM(array) != 1 || ARR_ELEMTYPE(array) != CHAROID || ARR_HASNULL(array))
		{
			route->broken = "its argument modes are malformed";
			ReleaseSysCache(tuple);
			return;
		}
		deconstruct_array(array, CHAROID, 1, true, TYPALIGN_CHAR, &mode_datums, NULL, &nall);
		mode_chars = palloc(Max(nall, 1));
		for (int i = 0; i < nall; i++)
			mode_chars[i] = DatumGetChar(mode_datums[i]);
	}
	else
		nall = proc->pronargs;

	route->nargs = proc->pronargs;
	route->args = palloc0(sizeof(MandantHttpArg) * Max(route->nargs, 1));
	for (int i = 0; i < nall && !route->broken; i++)
	{
		char		mode = mode_chars ? mode_chars[i] : PROARGMODE_IN;
		MandantHttpArg *arg;

		if (mode != PROARGMODE_IN && mode != PROARGMODE_INOUT)
			continue;
		if (in >= route->nargs)
		{
			route->broken = "its argument modes disagree with its argument count";
			break;
		}
		arg = &route->args[in];
		arg->type = proc->proargtypes.values[in];
		if (i >= nnames || VARSIZE_ANY_EXHDR(DatumGetTextPP(name_datums[i])) == 0)
			route->broken = "it has an unnamed argument";
		else if (IsPolymorphicType(arg->type) || get_typtype(arg->type) == TYPTYPE_PSEUDO)
			route->broken = "it has a polymorphic or pseudo-type argument";
		else
		{
			arg->name = TextDatumGetCString(name_datums[i]);
			arg->camel = MandantSnakeToCamel(arg->name);
			arg->has_default = in >= route->nargs - proc->pronargdefaults;
			arg->source = ArgSource(arg->name);
		}
		in++;
	}
	if (!route->broken && in != route->nargs)
		route->broken = "its argument modes disagree with its argument count";
	ReleaseSysCache(tuple);
}

/*
 * SplitTemplate cuts a path template into its segments; "{x}" segments
 * are parameters.
 */
static void
SplitTemplate(MandantHttpRoute *route)
{
	char	   *copy = pstrdup(route->path);
	char	   *save = NULL;
	List	   *segments = NIL;
	ListCell   *lc;
	int			i = 0;

	for (char *seg = strtok_r(copy, "/", &save); seg; seg = strtok_r(NULL, "/", &save))
		segments = lappend(segments, seg);
	route->nsegments = list_length(segments);
	route->segments = palloc(sizeof(char *) * Max(route->nsegments, 1));
	route->is_param = palloc0(sizeof(bool) * Max(route->nsegments, 1));
	foreach(lc, segments)
	{
		char	   *seg = lfirst(lc);
		size_t		len = strlen(seg);

		if (len > 2 && seg[0] == '{' && seg[len - 1] == '}')
		{
			route->is_param[i] = true;
			route->segments[i] = pnstrdup(seg + 1, len - 2);
		}
		else
			route->segments[i] = seg;
		i++;
	}
}

/*
 * LoadRoutes reads mandant.http_route into RouteContext.
 */
static void
LoadRoutes(void)
{
	MemoryContext old;
	uint64		n;

	if (RouteContext == NULL)
	{
		RouteContext = AllocSetContextCreate(TopMemoryContext, "mandant http routes",
											 ALLOCSET_SMALL_SIZES);
		MandantOnRelcacheInvalidation(InvalidateRoutes);
		CacheRegisterSyscacheCallback(PROCOID, InvalidateRoutesOnProc, (Datum) 0);
	}
	for (int i = 0; i < NumRoutes; i++)
		for (int p = 0; p < Routes[i].nplans; p++)
			SPI_freeplan(Routes[i].plans[p].plan);
	MemoryContextReset(RouteContext);
	Routes = NULL;
	NumRoutes = 0;
	route_relid = RouteRelid();
	RoutesValid = true;

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	if (SPI_execute("SELECT method, path, function::pg_catalog.oid, required_scope, public, paginated,"
					" envelope FROM mandant.http_route ORDER BY method, path", true, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not read mandant.http_route");
	n = SPI_processed;
	old = MemoryContextSwitchTo(RouteContext);
	Routes = palloc0(sizeof(MandantHttpRoute) * Max(n, 1));
	for (uint64 i = 0; i < n; i++)
	{
		HeapTuple	row = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		MandantHttpRoute *route = &Routes[i];
		bool		isnull;
		char	   *scope;

		route->method = SPI_getvalue(row, desc, 1);
		route->path = SPI_getvalue(row, desc, 2);
		route->label = psprintf("%s %s", route->method, route->path);
		route->function = DatumGetObjectId(SPI_getbinval(row, desc, 3, &isnull));
		scope = SPI_getvalue(row, desc, 4);
		route->public = DatumGetBool(SPI_getbinval(row, desc, 5, &isnull));
		route->paginated = DatumGetBool(SPI_getbinval(row, desc, 6, &isnull));
		route->envelope = DatumGetBool(SPI_getbinval(row, desc, 7, &isnull));
		route->scope = 0;
		if (scope != NULL)
		{
			int			bit = MandantScopeBit(scope);

			if (bit == 0)
				route->broken = psprintf("its scope \"%s\" is unknown", scope);
			route->scope = bit;
		}
		SplitTemplate(route);
		if (!route->broken)
			LoadFunction(route);
	}
	NumRoutes = (int) n;
	MemoryContextSwitchTo(old);
	SPI_finish();
}

/*
 * EnsureRoutes loads the routes; a load that fails (a statement timeout,
 * say) leaves no routes and the cache invalid, not half loaded.
 */
static void
EnsureRoutes(void)
{
	PG_TRY();
	{
		LoadRoutes();
	}
	PG_CATCH();
	{
		RoutesValid = false;
		Routes = NULL;
		NumRoutes = 0;
		PG_RE_THROW();
	}
	PG_END_TRY();
}

/*
 * MandantHttpRouteContext returns the context the routes and their plans
 * live in.
 */
MemoryContext
MandantHttpRouteContext(void)
{
	return RouteContext;
}

/*
 * MandantHttpMatch returns the route of method and path (segments already
 * split and percent-decoded), with the values of its parameters in
 * params[] (one per segment, NULL for literal ones), or NULL.  When only
 * the method differs, *allowed lists the methods that would match.
 */
MandantHttpRoute *
MandantHttpMatch(const char *method, char **segments, int nsegments,
				 char ***params, char **allowed)
{
	MandantHttpRoute *best = NULL;
	int			best_literals = -1;
	StringInfoData methods;

	if (!RoutesValid)
		EnsureRoutes();
	initStringInfo(&methods);
	for (int i = 0; i < NumRoutes; i++)
	{
		MandantHttpRoute *route = &Routes[i];
		int			literals = 0;
		bool		match = route->nsegments == nsegments;

		for (int s = 0; match && s < nsegments; s++)
		{
			if (route->is_param[s])
				match = segments[s][0] != '\0';
			else
			{
				match = strcmp(route->segments[s], segments[s]) == 0;
				literals++;
			}
		}
		if (!match)
			continue;
		if (strcmp(route->method, method) != 0)
		{
			if (strstr(methods.data, route->method) == NULL)
				appendStringInfo(&methods, "%s%s", methods.len ? ", " : "", route->method);
			continue;
		}
		if (literals > best_literals)
		{
			best = route;
			best_literals = literals;
		}
	}
	*allowed = methods.len > 0 ? methods.data : NULL;
	if (best != NULL)
	{
		*params = palloc0(sizeof(char *) * Max(nsegments, 1));
		for (int s = 0; s < nsegments; s++)
			if (best->is_param[s])
				(*params)[s] = segments[s];
	}
	return best;
}
