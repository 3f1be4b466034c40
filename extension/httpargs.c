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

	elemtype = get_element_type(base);
	if (OidIsValid(elemtype) && get_typlen(base) == -1)
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
