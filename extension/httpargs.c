/*-------------------------------------------------------------------------
 *
 * httpargs.c
 *		What a client sends, turned into the arguments of a route's
 *		function: query strings, percent-encoding and JSON values.
 *
 * The dispatcher (httpcall.c) names each argument by its camelCase key and
 * takes its value from the path, the query string or the JSON body.  A
 * value from the path or the query string is text and goes through the
 * argument type's input function, as if it were written in SQL; a JSON
 * value must have the JSON type that fits the argument (a number for
 * numeric types, true/false for boolean, an array for an array type, any
 * value for json and jsonb, a string for everything else, which its input
 * function then reads).  Domains are read by their own input function, so
 * their checks apply.  Input functions may raise (PostgreSQL 15 has no
 * soft input errors); the dispatcher runs each conversion in a
 * subtransaction and reports the message for the field.
 *
 * MandantHttpCollectArgs gathers one call's arguments: path parameters,
 * query parameters and the keys of a JSON object body by name, page and
 * pageSize of paginated routes, If-Match as expected_version, and the
 * arguments the gateway fills from the request itself (client_ip,
 * tenant_slug, access_token, refresh_token), which clients may not send.
 *
 * Copyright (c) 2026, the mandant developers
 *
 * IDENTIFICATION
 *		extension/httpargs.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "mb/pg_wchar.h"
#include "parser/parse_coerce.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/numeric.h"

#include "mandant.h"
#include "http.h"

/*
 * MandantFieldError makes one entry of error.details.
 */
MandantHttpFieldError *
MandantFieldError(const char *field, const char *fmt,...)
{
	MandantHttpFieldError *error = palloc(sizeof(MandantHttpFieldError));
	StringInfoData buf;

	initStringInfo(&buf);
	for (;;)
	{
		va_list		args;
		int			needed;

		va_start(args, fmt);
		needed = appendStringInfoVA(&buf, fmt, args);
		va_end(args);
		if (needed == 0)
			break;
		enlargeStringInfo(&buf, needed);
	}
	error->field = field;
	error->message = buf.data;
	return error;
}

/*
 * MandantPercentDecode decodes len bytes of a path segment or a query
 * string part; '+' is a space in query strings.  Returns NULL when an
 * escape is malformed or the result is not valid UTF-8 text (a NUL byte
 * included).
 */
char *
MandantPercentDecode(const char *text, size_t len, bool plus_is_space)
{
	char	   *out = palloc(len + 1);
	size_t		n = 0;

	for (size_t i = 0; i < len; i++)
	{
		if (text[i] == '%')
		{
			int			hi;
			int			lo;

			if (i + 2 >= len)
				return NULL;
			hi = MandantHexDigitValue(text[i + 1]);
			lo = MandantHexDigitValue(text[i + 2]);
			if (hi < 0 || lo < 0)
				return NULL;
			out[n++] = (char) (hi * 16 + lo);
			i += 2;
		}
		else if (text[i] == '+' && plus_is_space)
			out[n++] = ' ';
		else
			out[n++] = text[i];
	}
	out[n] = '\0';
	if (memchr(out, '\0', n) != NULL || !pg_verifymbstr(out, n, true))
		return NULL;
	return out;
}

/*
 * MandantParseQuery splits a query string into MandantHttpPair entries,
 * decoded.  Malformed parts become field errors.
 */
List *
MandantParseQuery(const char *query, List **errors)
{
	List	   *pairs = NIL;
	const char *p = query;

	while (p != NULL && *p != '\0')
	{
		const char *end = strchr(p, '&');
		size_t		len = end ? (size_t) (end - p) : strlen(p);
		const char *eq = memchr(p, '=', len);
		size_t		keylen = eq ? (size_t) (eq - p) : len;

		if (len > 0)
		{
			MandantHttpPair *pair = palloc(sizeof(MandantHttpPair));

			pair->key = MandantPercentDecode(p, keylen, true);
			pair->value = eq ? MandantPercentDecode(eq + 1, len - keylen - 1, true) : pstrdup("");
			if (pair->key == NULL || pair->value == NULL || pair->key[0] == '\0')
				*errors = lappend(*errors,
								  MandantFieldError(pair->key && pair->key[0] ? pair->key : "query",
													"is not a well-formed query parameter (percent-encoded UTF-8 key=value)"));
			else
				pairs = lappend(pairs, pair);
		}
		p = end ? end + 1 : NULL;
	}
	return pairs;
}

/*
 * InputValue reads text with the input function of type.
 */
static Datum
InputValue(const char *text, Oid type)
{
	Oid			input;
	Oid			ioparam;

	getTypeInputInfo(type, &input, &ioparam);
	return OidInputFunctionCall(input, (char *) text, ioparam, -1);
}

/*
 * JsonScalarText returns a JSON scalar as the text an input function reads.
 */
static char *
JsonScalarText(const JsonbValue *value)
{
	switch (value->type)
	{
		case jbvString:
			return pnstrdup(value->val.string.val, value->val.string.len);
		case jbvNumeric:
			return DatumGetCString(DirectFunctionCall1(numeric_out,
													   NumericGetDatum(value->val.numeric)));
		case jbvBool:
			return pstrdup(value->val.boolean ? "true" : "false");
		default:
			return NULL;
	}
}

/*
 * JsonArrayToDatum builds a one-dimensional array of elemtype from a JSON
 * array whose elements fit it.
 */
static bool
JsonArrayToDatum(const JsonbValue *value, Oid elemtype, Datum *datum,
				 const char **problem)
{
	JsonbIterator *it;
	JsonbValue	elem;
	JsonbIteratorToken token;
	List	   *values = NIL;
	List	   *nulls = NIL;
	int			n = 0;
	Datum	   *elems;
	bool	   *elemnulls;
	int			dims[1];
	int			lbs[1] = {1};
	int16		typlen;
	bool		typbyval;
	char		typalign;
	ListCell   *lv;
	ListCell   *ln;

	if (value->type != jbvBinary || !JsonContainerIsArray(value->val.binary.data))
	{
		*problem = psprintf("must be an array of %s", format_type_be(elemtype));
		return false;
	}
	it = JsonbIteratorInit(value->val.binary.data);
	while ((token = JsonbIteratorNext(&it, &elem, true)) != WJB_DONE)
	{
		Datum		d;
		bool		isnull;

		if (token != WJB_ELEM)
			continue;
		if (elem.type == jbvBinary)
		{
			*problem = psprintf("must be an array of %s, not of arrays or objects",
								format_type_be(elemtype));
			return false;
		}
		if (!MandantJsonToDatum(&elem, elemtype, false, &d, &isnull, problem))
			return false;
		values = lappend(values, (void *) d);
		nulls = lappend_int(nulls, isnull);
		n++;
	}
	elems = palloc(sizeof(Datum) * Max(n, 1));
	elemnulls = palloc(sizeof(bool) * Max(n, 1));
	n = 0;
	forboth(lv, values, ln, nulls)
	{
		elems[n] = (Datum) lfirst(lv);
		elemnulls[n] = lfirst_int(ln) != 0;
		n++;
	}
	dims[0] = n;
	get_typlenbyvalalign(elemtype, &typlen, &typbyval, &typalign);
	*datum = PointerGetDatum(construct_md_array(elems, elemnulls, 1, dims, lbs, elemtype,
												typlen, typbyval, typalign));
	return true;
}

/*
 * MandantJsonToDatum converts one value sent by the client into an
 * argument of type: from_text when it came from the path or the query
 * string (value is then a string).  Returns false with *problem set when
 * the JSON type does not fit; an input function that refuses the text
 * raises.
 */
bool
MandantJsonToDatum(const JsonbValue *value, Oid type, bool from_text,
				   Datum *datum, bool *isnull, const char **problem)
{
	Oid			base = getBaseType(type);
	Oid			elemtype;
	char		category;
	bool		preferred;
	char	   *text;

	*isnull = false;
	*problem = NULL;
	if (value->type == jbvNull)
	{
		*isnull = true;
		*datum = (Datum) 0;
		return true;
	}
	if (from_text)
	{
		*datum = InputValue(JsonScalarText(value), type);
		return true;
	}

	/* json and jsonb take any JSON value */
	if (base == JSONBOID || base == JSONOID)
	{
		Jsonb	   *jsonb = JsonbValueToJsonb((JsonbValue *) value);

		if (base == JSONBOID && type == base)
			*datum = JsonbPGetDatum(jsonb);
		else
			*datum = InputValue(JsonbToCString(NULL, &jsonb->root, VARSIZE(jsonb)), type);
		return true;
	}

	/*
	 * Arrays; int2vector and oidvector look like arrays but take no nulls
	 * and count from 0: they are read as text (the next case).
	 */
	elemtype = get_element_type(base);
	if (OidIsValid(elemtype) && get_array_type(elemtype) == base)
	{
		Datum		array;

		if (!JsonArrayToDatum(value, elemtype, &array, problem))
			return false;
		if (type != base)
		{
			/* a domain over an array type: its input function checks it */
			Oid			output;
			bool		varlena;

			getTypeOutputInfo(base, &output, &varlena);
			array = InputValue(OidOutputFunctionCall(output, array), type);
		}
		*datum = array;
		return true;
	}

	get_type_category_preferred(base, &category, &preferred);
	text = JsonScalarText(value);
	if (category == TYPCATEGORY_BOOLEAN && value->type != jbvBool)
		*problem = "must be true or false";
	else if (category == TYPCATEGORY_NUMERIC && value->type != jbvNumeric)
		*problem = psprintf("must be a number (%s)", format_type_be(type));
	else if (category != TYPCATEGORY_BOOLEAN && category != TYPCATEGORY_NUMERIC &&
			 value->type != jbvString)
		*problem = psprintf("must be a string (%s)", format_type_be(type));
	if (*problem != NULL || text == NULL)
	{
		if (*problem == NULL)
			*problem = psprintf("must be a %s", format_type_be(type));
		return false;
	}
	*datum = InputValue(text, type);
	return true;
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
GiveArg(const MandantHttpRoute *route, MandantHttpArgs *args, const char *key, JsonbValue *value,
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
ReadPageParameter(MandantHttpArgs *args, const char *key, const char *value, int64 *out, int64 max,
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
 * MandantHttpCollectArgs gathers the arguments of the call from the path, the query
 * string, the body and the request, and converts them.
 */
void
MandantHttpCollectArgs(const MandantHttpRoute *route, const MandantHttpRequest *req, char **params,
			const MandantHttpTenant *tenant, MandantHttpArgs *args)
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
		ErrorData  *edata = MandantHttpGuarded(ParseBody, &parse);

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
		edata = MandantHttpGuarded(Convert, &c);
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
