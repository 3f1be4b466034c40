/*-------------------------------------------------------------------------
 *
 * rowjson.c
 *		Column values to jsonb, for the row triggers (audit, outbox).
 *
 * The triggers turn table rows into jsonb objects once per written row, so
 * the conversion is on the hot path.  PostgreSQL's to_jsonb() does the right
 * thing for every type but is only reachable through the fmgr, and each
 * call serialises its result into a Jsonb that the caller then unpacks
 * again.  So the common column types (bool, integers, numeric, text,
 * varchar, uuid, jsonb, date and timestamps) are converted here directly
 * into JsonbValues, exactly as to_jsonb() would write them; every other
 * type goes through to_jsonb() itself, called with an FmgrInfo whose
 * fn_expr carries the column type (to_jsonb reads its argument type from
 * there).
 *
 * A MandantColumnJson is prepared once per column and cached by the
 * trigger that owns it; nothing here caches on its own.
 *
 * Copyright (c) 2026, the mandant developers
 *
 * IDENTIFICATION
 *		extension/rowjson.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "fmgr.h"
#include "nodes/makefuncs.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/json.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/numeric.h"
#include "utils/uuid.h"

#include "mandant.h"

/*
 * ClassifyColumnType picks the conversion for a type: a fast path for the
 * common base types, to_jsonb() for everything else (domains, arrays,
 * enums, composites, floats with their NaN/Infinity rules, ...).
 */
static MandantJsonKind
ClassifyColumnType(Oid typid)
{
	switch (typid)
	{
		case BOOLOID:
			return MANDANT_JSON_BOOL;
		case INT2OID:
		case INT4OID:
		case INT8OID:
			return MANDANT_JSON_INTEGER;
		case NUMERICOID:
			return MANDANT_JSON_NUMERIC;
		case TEXTOID:
		case VARCHAROID:
			return MANDANT_JSON_TEXT;
		case UUIDOID:
			return MANDANT_JSON_UUID;
		case JSONBOID:
			return MANDANT_JSON_JSONB;
		case DATEOID:
		case TIMESTAMPOID:
		case TIMESTAMPTZOID:
			return MANDANT_JSON_DATETIME;
		default:
			return MANDANT_JSON_GENERIC;
	}
}

/*
 * MandantInitColumnJson prepares the conversion of one column; the FmgrInfo
 * and its fn_expr live in cxt, which must outlive every conversion.
 */
void
MandantInitColumnJson(MandantColumnJson *col, Form_pg_attribute att,
					  MemoryContext cxt)
{
	MemoryContext old;

	col->typid = att->atttypid;
	col->typlen = att->attlen;
	col->kind = ClassifyColumnType(att->atttypid);
	if (col->kind != MANDANT_JSON_GENERIC)
		return;

	old = MemoryContextSwitchTo(cxt);
	fmgr_info_cxt(F_TO_JSONB, &col->to_jsonb, cxt);
	col->to_jsonb.fn_expr = (Node *)
		makeFuncExpr(F_TO_JSONB, JSONBOID,
					 list_make1(makeNullConst(att->atttypid, att->atttypmod,
											  att->attcollation)),
					 InvalidOid, InvalidOid, COERCE_EXPLICIT_CALL);
	MemoryContextSwitchTo(old);
}

/*
 * SetJsonbString makes *out a jsonb string that points at len bytes of s.
 */
static inline void
SetJsonbString(JsonbValue *out, char *s, int len)
{
	out->type = jbvString;
	out->val.string.val = s;
	out->val.string.len = len;
}

/*
 * SetJsonbBinary makes *out point at the container of a jsonb datum.
 */
static inline void
SetJsonbBinary(JsonbValue *out, Jsonb *jb)
{
	out->type = jbvBinary;
	out->val.binary.data = &jb->root;
	out->val.binary.len = VARSIZE(jb) - VARHDRSZ;
}

/*
 * MandantColumnToJsonbValue converts one column value, as to_jsonb() would.
 * Strings may point into the (detoasted) datum; the result is valid as long
 * as the current memory context.
 */
void
MandantColumnToJsonbValue(const MandantColumnJson *col, Datum value,
						  bool isnull, JsonbValue *out)
{
	if (isnull)
	{
		out->type = jbvNull;
		return;
	}

	switch (col->kind)
	{
		case MANDANT_JSON_BOOL:
			out->type = jbvBool;
			out->val.boolean = DatumGetBool(value);
			break;
		case MANDANT_JSON_INTEGER:
			out->type = jbvNumeric;
			if (col->typid == INT2OID)
				out->val.numeric = int64_to_numeric(DatumGetInt16(value));
			else if (col->typid == INT4OID)
				out->val.numeric = int64_to_numeric(DatumGetInt32(value));
			else
				out->val.numeric = int64_to_numeric(DatumGetInt64(value));
			break;
		case MANDANT_JSON_NUMERIC:
			/* to_jsonb writes NaN and infinities as strings */
			if (numeric_is_nan(DatumGetNumeric(value)) ||
				numeric_is_inf(DatumGetNumeric(value)))
			{
				char	   *s = DatumGetCString(DirectFunctionCall1(numeric_out, value));

				SetJsonbString(out, s, strlen(s));
			}
			else
			{
				out->type = jbvNumeric;
				out->val.numeric = DatumGetNumeric(value);
			}
			break;
		case MANDANT_JSON_TEXT:
			{
				text	   *t = DatumGetTextPP(value);

				SetJsonbString(out, VARDATA_ANY(t), VARSIZE_ANY_EXHDR(t));
			}
			break;
		case MANDANT_JSON_UUID:
			{
				char	   *s = DatumGetCString(DirectFunctionCall1(uuid_out, value));

				SetJsonbString(out, s, strlen(s));
			}
			break;
		case MANDANT_JSON_JSONB:
			SetJsonbBinary(out, DatumGetJsonbP(value));
			break;
		case MANDANT_JSON_DATETIME:
			{
				char	   *s = JsonEncodeDateTime(NULL, value, col->typid, NULL);

				SetJsonbString(out, s, strlen(s));
			}
			break;
		case MANDANT_JSON_GENERIC:
			SetJsonbBinary(out,
						   DatumGetJsonbP(FunctionCall1Coll((FmgrInfo *) &col->to_jsonb,
															InvalidOid, value)));
			break;
	}
}

/*
 * MandantPushKey pushes an object key of len bytes.
 */
void
MandantPushKey(JsonbParseState **state, const char *key, int len)
{
	JsonbValue	k;

	SetJsonbString(&k, (char *) key, len);
	(void) pushJsonbValue(state, WJB_KEY, &k);
}

/*
 * MandantPushTextPair pushes the key and a string value, or JSON null for
 * a NULL value, into an object being built.
 */
void
MandantPushTextPair(JsonbParseState **state, const char *key, const char *value)
{
	JsonbValue	v;

	MandantPushKey(state, key, strlen(key));
	if (value != NULL)
		SetJsonbString(&v, (char *) value, strlen(value));
	else
		v.type = jbvNull;
	(void) pushJsonbValue(state, WJB_VALUE, &v);
}
