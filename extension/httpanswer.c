/*-------------------------------------------------------------------------
 *
 * httpanswer.c
 *		The answers of the HTTP gateway: the JSON envelope, the status of
 *		an error, and the camelCase keys of a result.
 *
 * Every answer is one envelope:
 *
 *	{"success": true, "data": ..., "pagination": {...}?, "meta": {...}}
 *	{"success": false, "error": {"code", "message", "details"?, "hint"?},
 *	 "meta": {...}}
 *
 * with meta = {"timestamp": ISO 8601 UTC, "requestId"}.  An error's status
 * and code follow the design's table (README, "Errors"): mandant's own
 * SQLSTATEs carry theirs (mandant.h), a few standard ones map to 403, 404,
 * 409 and 400, the statement timeout to 503, and everything else is 500
 * INTERNAL_ERROR, whose message is fixed: the text of an unexpected error
 * (which may quote SQL, names or values) stays in the server log.
 *
 * A result's rows come from to_jsonb() of the function's columns, so their
 * keys are snake_case; the answer renames the keys of the rows (the top
 * level of an object, the top level of each object in an array) to
 * camelCase and leaves nested values as they are: they are data.  A
 * refresh token in a result leaves the body for an HttpOnly cookie
 * (httpcall.c writes the header).
 *
 * Copyright (c) 2026, the mandant developers
 *
 * IDENTIFICATION
 *		extension/httpanswer.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "datatype/timestamp.h"
#include "lib/stringinfo.h"
#include "utils/datetime.h"
#include "utils/json.h"
#include "utils/jsonb.h"
#include "utils/timestamp.h"

#include "mandant.h"
#include "http.h"

/*
 * MandantHttpErrorStatus gives the HTTP status and error code of a
 * SQLSTATE, and whether the error's own message may be shown.
 */
void
MandantHttpErrorStatus(int sqlerrcode, int *status, const char **code, bool *show_message)
{
	*show_message = true;
	*code = MandantErrorHttp(sqlerrcode, status);
	if (*code != NULL)
		return;
	switch (sqlerrcode)
	{
		case ERRCODE_INSUFFICIENT_PRIVILEGE:
			*status = 403;
			*code = "FORBIDDEN";
			return;
		case ERRCODE_UNIQUE_VIOLATION:
		case ERRCODE_FOREIGN_KEY_VIOLATION:
			*status = 409;
			*code = "CONFLICT";
			return;
		case ERRCODE_NOT_NULL_VIOLATION:
		case ERRCODE_CHECK_VIOLATION:
			*status = 400;
			*code = "VALIDATION_ERROR";
			return;
		case ERRCODE_NO_DATA_FOUND:
			*status = 404;
			*code = "NOT_FOUND";
			return;
		case ERRCODE_QUERY_CANCELED:
			*status = 503;
			*code = "TIMEOUT";
			*show_message = false;
			return;
	}
	if (ERRCODE_TO_CATEGORY(sqlerrcode) == ERRCODE_DATA_EXCEPTION)
	{
		*status = 400;
		*code = "VALIDATION_ERROR";
		return;
	}
	*status = 500;
	*code = "INTERNAL_ERROR";
	*show_message = false;
}

/*
 * IsRowLevel: keys at this depth belong to a row (see the file header).
 */
static bool
IsRowLevel(int depth, bool root_is_array)
{
	return depth == (root_is_array ? 2 : 1);
}

/*
 * MandantCamelizeResult returns data with the keys of its rows in
 * camelCase; a string refresh_token of a top-level object is taken out
 * and returned in *refresh_token (else NULL).
 */
Jsonb *
MandantCamelizeResult(Jsonb *data, char **refresh_token)
{
	JsonbIterator *it;
	JsonbValue	v;
	JsonbIteratorToken token;
	JsonbParseState *state = NULL;
	JsonbValue *result = NULL;
	bool		root_is_array = JB_ROOT_IS_ARRAY(data) && !JB_ROOT_IS_SCALAR(data);
	int			depth = 0;
	bool		skip_value = false;

	*refresh_token = NULL;
	if (JB_ROOT_IS_SCALAR(data))
		return data;
	it = JsonbIteratorInit(&data->root);
	while ((token = JsonbIteratorNext(&it, &v, false)) != WJB_DONE)
	{
		switch (token)
		{
			case WJB_BEGIN_OBJECT:
			case WJB_BEGIN_ARRAY:
				depth++;
				result = pushJsonbValue(&state, token, &v);
				break;
			case WJB_END_OBJECT:
			case WJB_END_ARRAY:
				depth--;
				result = pushJsonbValue(&state, token, NULL);
				break;
			case WJB_KEY:
				if (depth == 1 && !root_is_array &&
					((v.val.string.len == 13 && memcmp(v.val.string.val, "refresh_token", 13) == 0) ||
					 (v.val.string.len == 12 && memcmp(v.val.string.val, "refreshToken", 12) == 0)))
				{
					skip_value = true;
					break;
				}
				if (IsRowLevel(depth, root_is_array) &&
					memchr(v.val.string.val, '_', v.val.string.len) != NULL)
				{
					char	   *camel = MandantSnakeToCamel(pnstrdup(v.val.string.val,
																	 v.val.string.len));

					v.val.string.val = camel;
					v.val.string.len = strlen(camel);
				}
				result = pushJsonbValue(&state, token, &v);
				break;
			case WJB_VALUE:
				if (skip_value && v.type == jbvString)
				{
					*refresh_token = pnstrdup(v.val.string.val, v.val.string.len);
					skip_value = false;
					break;
				}
				if (skip_value)
				{
					/* not a token after all: keep it under its name */
					JsonbValue	key;

					key.type = jbvString;
					key.val.string.val = "refreshToken";
					key.val.string.len = 12;
					pushJsonbValue(&state, WJB_KEY, &key);
					skip_value = false;
				}
				result = pushJsonbValue(&state, token, &v);
				break;
			case WJB_ELEM:
				result = pushJsonbValue(&state, token, &v);
				break;
			case WJB_DONE:
				break;
		}
	}
	return JsonbValueToJsonb(result);
}

/* AppendTimestamp writes now as ISO 8601 UTC with milliseconds. */
static void
AppendTimestamp(StringInfo buf)
{
	struct pg_tm tm;
	fsec_t		fsec;

	if (timestamp2tm(GetCurrentTimestamp(), NULL, &tm, &fsec, NULL, NULL) != 0)
		elog(ERROR, "timestamp out of range");
	appendStringInfo(buf, "\"%04d-%02d-%02dT%02d:%02d:%02d.%03dZ\"",
					 tm.tm_year, tm.tm_mon, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
					 (int) (fsec / 1000));
}

/* AppendPair writes ,"key":"value" with value escaped. */
static void
AppendPair(StringInfo buf, const char *key, const char *value)
{
	appendStringInfo(buf, ",\"%s\":", key);
	escape_json(buf, value);
}

/*
 * MandantHttpEnvelope writes the answer's body.  A success carries data
 * (NULL: JSON null) and, when page_size > 0, the pagination; an error
 * carries its code, message, field errors (MandantHttpFieldError) or a
 * detail, and a hint.
 */
char *
MandantHttpEnvelope(bool success, Jsonb *data, const char *code, const char *message,
					List *field_errors, const char *detail, const char *hint,
					const char *request_id, int64 page, int64 page_size, int64 total)
{
	StringInfoData buf;
	ListCell   *lc;
	bool		first = true;

	initStringInfo(&buf);
	if (success)
	{
		appendStringInfoString(&buf, "{\"success\":true,\"data\":");
		if (data == NULL)
			appendStringInfoString(&buf, "null");
		else
			(void) JsonbToCString(&buf, &data->root, VARSIZE(data));
		if (page_size > 0)
			appendStringInfo(&buf,
							 ",\"pagination\":{\"page\":" INT64_FORMAT ",\"pageSize\":" INT64_FORMAT
							 ",\"total\":" INT64_FORMAT ",\"totalPages\":" INT64_FORMAT "}",
							 page, page_size, total, (total + page_size - 1) / page_size);
	}
	else
	{
		appendStringInfoString(&buf, "{\"success\":false,\"error\":{\"code\":");
		escape_json(&buf, code);
		AppendPair(&buf, "message", message);
		if (field_errors != NIL || detail != NULL)
		{
			appendStringInfoString(&buf, ",\"details\":[");
			foreach(lc, field_errors)
			{
				MandantHttpFieldError *error = lfirst(lc);

				appendStringInfoString(&buf, first ? "{\"field\":" : ",{\"field\":");
				first = false;
				escape_json(&buf, error->field);
				AppendPair(&buf, "message", error->message);
				appendStringInfoChar(&buf, '}');
			}
			if (detail != NULL)
			{
				appendStringInfoString(&buf, first ? "{\"message\":" : ",{\"message\":");
				escape_json(&buf, detail);
				appendStringInfoChar(&buf, '}');
			}
			appendStringInfoChar(&buf, ']');
		}
		if (hint != NULL)
			AppendPair(&buf, "hint", hint);
		appendStringInfoChar(&buf, '}');
	}
	appendStringInfoString(&buf, ",\"meta\":{\"timestamp\":");
	AppendTimestamp(&buf);
	AppendPair(&buf, "requestId", request_id);
	appendStringInfoString(&buf, "}}");
	return buf.data;
}
