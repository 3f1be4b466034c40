/*-------------------------------------------------------------------------
 *
 * tenantstream.c
 *		A tenant as a stream of JSON lines: export one line at a time,
 *		import it through COPY, in memory that does not grow with the
 *		tenant.
 *
 * mandant.export_tenant() builds one jsonb value, which caps a tenant at
 * 256 MB and holds all of it in memory.  The stream (format
 * "mandant.tenant-stream", version 1, documented in README.md) is one JSON
 * object per line: a header (the tenant, the tables in insertion order),
 * then each tenant table's rows, the tenant's roles, members,
 * configuration and its history, quota changes, charged usage, the audit
 * events and their seals, and last a trailer with the number of lines
 * before it and their SHA-256, so that an import notices a stream cut
 * short.  Every line starts with {"<kind>": so that the importer knows
 * what a line is without parsing it twice.
 *
 * Export (mandant.op_export_tenant_stream, a set-returning function called
 * one row at a time) keeps one SPI cursor open at a time and returns, per
 * call, the next EXPORT_BATCH lines of it joined by newlines: a per-row
 * cost (the call, COPY's row) per thousand lines rather than per line.
 * COPY (SELECT ...) TO STDOUT streams the chunks to the client, escaping
 * the newlines, which COPY ... FROM turns back; psql -At writes them as
 * plain lines.  The import takes a chunk or a line per row.  All cursors read with the snapshot of the calling statement,
 * so the stream is one consistent picture of the tenant.  A tenant
 * table's rows are read as the table's owner in a security-restricted
 * operation outside any tenant (MandantEnterTableOwner), around the
 * opening of its cursor and around every fetch, since the owner's code
 * (casts to json, output functions) runs while rows are fetched.
 *
 * Import goes through the table mandant.tenant_import (one text column,
 * line) and its triggers, so that `COPY mandant.tenant_import FROM STDIN`
 * takes a stream straight from a pipe: a BEFORE STATEMENT trigger checks
 * the caller (the gate's rule of import_tenant) and opens the import
 * (mandant.op_tenant_import_open), a BEFORE row trigger takes each line
 * and keeps it out of the table, and the AFTER STATEMENT trigger finishes
 * it.  The table keeps nothing (CHECK (false) refuses a row that would
 * get past the triggers), and the triggers fire in replica mode too
 * (ENABLE ALWAYS), which a view's cannot: an import is never skipped
 * silently, and a table owner's trigger that fires during an import's
 * writes cannot start another one unchecked.  Lines of one kind
 * (one table's rows, audit events, ...) are gathered into a batch of at
 * most IMPORT_BATCH_ROWS lines or IMPORT_BATCH_BYTES bytes and written
 * with one statement: table rows as the table's owner (as above) in
 * replica mode (the tables' triggers do not audit or re-check restored
 * rows), everything else by mandant.op_import_tenant_items(), which
 * import_tenant() shares.  The end checks the trailer, the foreign keys
 * of the imported rows and the audit chain
 * (mandant.op_import_tenant_finish()).  One statement imports one tenant,
 * all or nothing: any error aborts the statement's (sub)transaction, whose
 * memory holds the import's state (a reset callback forgets it).
 *
 * Copyright (c) 2026, the mandant developers
 *
 * IDENTIFICATION
 *		extension/tenantstream.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "commands/trigger.h"
#include "common/cryptohash.h"
#include "common/jsonapi.h"
#include "common/sha2.h"
#include "executor/spi.h"
#include "funcapi.h"
#include "lib/stringinfo.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "tcop/pquery.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/datum.h"
#include "utils/guc.h"
#include "utils/json.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/portal.h"

#include "mandant.h"

PG_FUNCTION_INFO_V1(mandant_op_export_tenant_stream);
PG_FUNCTION_INFO_V1(mandant_op_tenant_import_open);
PG_FUNCTION_INFO_V1(mandant_tenant_import_line);

#define STREAM_FORMAT		"mandant.tenant-stream"
#define STREAM_VERSION		1

/* Lines fetched from a cursor at a time. */
#define EXPORT_BATCH		1000

/* Lines and bytes of one kind written with one statement. */
#define IMPORT_BATCH_ROWS	1000
#define IMPORT_BATCH_BYTES	(4 * 1024 * 1024)

/*
 * The sections of the stream after the header and the tenant tables: the
 * kind that starts their lines and the query (over $1, the tenant) that
 * returns them, each line whole.  Their order is the import's order.
 */
typedef struct StreamSection
{
	const char *kind;
	const char *query;
} StreamSection;

static const StreamSection stream_sections[] = {
	{"role",
	 "SELECT '{\"role\":' || json_build_object('name', r.name, 'scopes', r.scopes, 'description', r.description)::text || '}'"
	 " FROM mandant.role r WHERE r.tenant_id = $1 ORDER BY r.name"},
	{"membership",
	 "SELECT '{\"membership\":' || json_build_object('email', u.email, 'displayName', u.display_name, 'role', m.role,"
	 " 'createdAt', m.created_at, 'createdBy', m.created_by)::text || '}'"
	 " FROM mandant.membership m JOIN mandant.users u ON u.id = m.user_id WHERE m.tenant_id = $1 ORDER BY lower(u.email)"},
	{"configHistory",
	 "SELECT '{\"configHistory\":' || (to_jsonb(h) - 'tenant_id')::text || '}'"
	 " FROM mandant.config_history h WHERE h.tenant_id = $1 ORDER BY h.revision"},
	{"config",
	 "SELECT '{\"config\":' || (to_jsonb(c) - 'tenant_id')::text || '}'"
	 " FROM mandant.config_entry c WHERE c.tenant_id = $1 ORDER BY c.service, c.key"},
	{"quotaChange",
	 "SELECT '{\"quotaChange\":' || (to_jsonb(q) - 'tenant_id' - 'id')::text || '}'"
	 " FROM mandant.quota_change q WHERE q.tenant_id = $1 ORDER BY q.id"},
	{"charged",
	 "SELECT '{\"charged\":' || json_build_object('resource', u.resource, 'used', u.used)::text || '}'"
	 " FROM mandant.tenant_usage u WHERE u.tenant_id = $1"
	 " AND NOT EXISTS (SELECT 1 FROM mandant.quota_table q WHERE q.resource = u.resource) ORDER BY u.resource"},
	{"auditEvent",
	 "SELECT '{\"auditEvent\":' || (to_jsonb(e) - 'tenant_id')::text || '}'"
	 " FROM mandant.audit_event e WHERE e.tenant_id = $1 ORDER BY e.id"},
	{"auditSeal",
	 "SELECT '{\"auditSeal\":' || (to_jsonb(s) - 'tenant_id')::text || '}'"
	 " FROM mandant.audit_seal s WHERE s.tenant_id = $1 ORDER BY s.seq"},
};

#define NUM_STREAM_SECTIONS lengthof(stream_sections)

/* The header's query: the tenant and its tables, parents first. */
static const char *header_query =
"SELECT '{\"format\":\"" STREAM_FORMAT "\",\"version\":" CppAsString2(STREAM_VERSION) ",\"exportedAt\":'"
" || to_json(now())::text || ',\"tenant\":' || to_jsonb(t)::text || ',\"tables\":'"
" || (SELECT COALESCE(json_agg(x.relid::text ORDER BY x.depth DESC, x.relid::text), '[]')::text"
"     FROM mandant.tenant_tables() x) || '}'"
" FROM mandant.tenant t WHERE t.id = $1";

/* One source of lines of an export: the header, a tenant table, a section. */
typedef struct ExportSource
{
	char	   *query;
	Oid			relid;			/* the tenant table read as its owner, or
								 * InvalidOid */
} ExportSource;

typedef struct ExportState
{
	pg_uuid_t	tenant;
	List	   *sources;		/* of ExportSource */
	int			next_source;
	char	   *portal;			/* the open cursor's name, or NULL */
	Portal		portal_ptr;		/* and the portal it named */
	Oid			portal_relid;
	MemoryContext chunk_cxt;
	text	   *chunk;			/* lines not handed out yet, or NULL */
	pg_cryptohash_ctx *sha;
	int64		lines;
	bool		done;
} ExportState;

/*
 * StreamHashLine adds one line and its newline to the stream's SHA-256.
 */
static void
StreamHashLine(pg_cryptohash_ctx *sha, const char *line, int len)
{
	if (pg_cryptohash_update(sha, (const uint8 *) line, len) < 0 ||
		pg_cryptohash_update(sha, (const uint8 *) "\n", 1) < 0)
		elog(ERROR, "could not compute the tenant stream's SHA-256: %s", pg_cryptohash_error(sha));
}

/*
 * StreamDigestHex finishes the stream's SHA-256 into 64 hex digits.
 */
static char *
StreamDigestHex(pg_cryptohash_ctx *sha)
{
	uint8		digest[PG_SHA256_DIGEST_LENGTH];
	char	   *hex = palloc(PG_SHA256_DIGEST_LENGTH * 2 + 1);

	if (pg_cryptohash_final(sha, digest, sizeof(digest)) < 0)
		elog(ERROR, "could not compute the tenant stream's SHA-256: %s", pg_cryptohash_error(sha));
	hex_encode((const char *) digest, sizeof(digest), hex);
	hex[PG_SHA256_DIGEST_LENGTH * 2] = '\0';
	return hex;
}

/*
 * ExportSources lists where an export's lines come from, allocated in cxt:
 * the header, the tenant tables in insertion order (the order of the
 * header's "tables"), then the sections.  A table's query is built from
 * the catalog only.
 */
static List *
ExportSources(MemoryContext cxt)
{
	List	   *sources = NIL;
	ExportSource *source;
	MemoryContext old;
	uint64		i;

	SPI_connect();
	if (SPI_execute("SELECT x.relid::oid, x.relid::text, x.tenant_column::text"
					" FROM mandant.tenant_tables() x ORDER BY x.depth DESC, x.relid::text",
					true, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not list the tenant tables");
	old = MemoryContextSwitchTo(cxt);
	source = palloc0(sizeof(ExportSource));
	source->query = pstrdup(header_query);
	sources = lappend(sources, source);
	for (i = 0; i < SPI_processed; i++)
	{
		HeapTuple	row = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		bool		isnull;
		char	   *name = SPI_getvalue(row, desc, 2);
		StringInfoData prefix;

		initStringInfo(&prefix);
		appendStringInfoString(&prefix, "{\"table\":");
		escape_json(&prefix, name);
		appendStringInfoString(&prefix, ",\"row\":");

		source = palloc0(sizeof(ExportSource));
		source->relid = DatumGetObjectId(SPI_getbinval(row, desc, 1, &isnull));
		source->query = psprintf("SELECT pg_catalog.textcat(pg_catalog.textcat(%s,"
								 " pg_catalog.to_jsonb(r)::pg_catalog.text), '}')"
								 " FROM %s r WHERE r.%s OPERATOR(pg_catalog.=) $1",
								 quote_literal_cstr(prefix.data), name,
								 quote_identifier(SPI_getvalue(row, desc, 3)));
		sources = lappend(sources, source);
	}
	for (i = 0; i < NUM_STREAM_SECTIONS; i++)
	{
		source = palloc0(sizeof(ExportSource));
		source->query = pstrdup(stream_sections[i].query);
		sources = lappend(sources, source);
	}
	MemoryContextSwitchTo(old);
	SPI_finish();
	return sources;
}

/*
 * ExportOpenCursor opens the cursor of source, as the owner of its table
 * if it reads one, with the snapshot of the calling statement.  The
 * cursor stays open between calls, while table owners' code runs (casts,
 * output functions): its name is random and it is left out of
 * pg_cursors, so that no such code can find it to read, move, close or
 * replace it (ExportFindCursor checks it is still the same portal).
 */
static void
ExportOpenCursor(ExportState *state, ExportSource *source, MemoryContext cxt)
{
	Oid			argtypes[1] = {UUIDOID};
	Datum		args[1];
	MandantSavedUser saved;
	uint8		random[16];
	char		hex[sizeof(random) * 2 + 1];
	char	   *name;
	Portal		portal;

	MandantStrongRandom(random, sizeof(random));
	hex_encode((const char *) random, sizeof(random), hex);
	hex[sizeof(hex) - 1] = '\0';
	name = MemoryContextStrdup(cxt, psprintf("mandant export %s", hex));

	args[0] = UUIDPGetDatum(&state->tenant);
	if (OidIsValid(source->relid))
		MandantEnterTableOwner(source->relid, &state->tenant, &saved);
	SPI_connect();
	portal = SPI_cursor_open_with_args(name, source->query, 1, argtypes, args, NULL, true, 0);
	portal->visible = false;
	SPI_finish();
	if (OidIsValid(source->relid))
		MandantRestoreUser(&saved);
	state->portal = name;
	state->portal_ptr = portal;
	state->portal_relid = source->relid;
}

/*
 * ExportFindCursor returns the export's open cursor, or raises if it is
 * gone or is not the portal the export opened: the export's query ended
 * its transaction (a cursor WITH HOLD) or closed every cursor (CLOSE ALL).
 */
static Portal
ExportFindCursor(ExportState *state)
{
	Portal		portal = GetPortalByName(state->portal);

	if (portal == NULL || portal != state->portal_ptr)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_CURSOR_STATE),
				 errmsg("the cursor of a tenant export is gone"),
				 errdetail("Its transaction ended (a cursor WITH HOLD), or code run by the export closed every cursor."),
				 errhint("Run the export as COPY (SELECT mandant.export_tenant_stream(...)) TO STDOUT, or in a cursor without HOLD.")));
	return portal;
}

/*
 * ExportFetch fetches the next EXPORT_BATCH lines of the open cursor, as
 * the owner of the cursor's table if it reads one, and makes them the
 * state's chunk: the lines joined by newlines, each added to the stream's
 * SHA-256.  It closes the cursor when it has no more.
 */
static void
ExportFetch(ExportState *state)
{
	MandantSavedUser saved;
	Portal		portal;
	StringInfoData chunk;
	uint64		i;

	MemoryContextReset(state->chunk_cxt);
	state->chunk = NULL;
	chunk.data = NULL;
	chunk.len = 0;
	if (OidIsValid(state->portal_relid))
		MandantEnterTableOwner(state->portal_relid, &state->tenant, &saved);
	SPI_connect();
	portal = ExportFindCursor(state);
	SPI_cursor_fetch(portal, true, EXPORT_BATCH);
	if (SPI_processed > 0)
	{
		MemoryContext old = MemoryContextSwitchTo(state->chunk_cxt);

		initStringInfo(&chunk);
		appendStringInfoSpaces(&chunk, VARHDRSZ);
		MemoryContextSwitchTo(old);
	}
	for (i = 0; i < SPI_processed; i++)
	{
		bool		isnull;
		Datum		value = SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1, &isnull);
		text	   *line;

		if (isnull)
			continue;
		line = DatumGetTextPP(value);
		StreamHashLine(state->sha, VARDATA_ANY(line), VARSIZE_ANY_EXHDR(line));
		state->lines++;
		if (chunk.len > VARHDRSZ)
			appendStringInfoChar(&chunk, '\n');
		appendBinaryStringInfo(&chunk, VARDATA_ANY(line), VARSIZE_ANY_EXHDR(line));
	}
	if (SPI_processed > 0 && chunk.len > VARHDRSZ)
	{
		SET_VARSIZE(chunk.data, chunk.len);
		state->chunk = (text *) chunk.data;
	}
	if (SPI_processed == 0)
	{
		SPI_cursor_close(portal);
		state->portal = NULL;
		state->portal_ptr = NULL;
	}
	SPI_finish();
	if (OidIsValid(state->portal_relid))
		MandantRestoreUser(&saved);
}

/*
 * TenantExists says whether mandant.tenant has a row of that id.
 */
static bool
TenantExists(const pg_uuid_t *tenant)
{
	Oid			argtypes[1] = {UUIDOID};
	Datum		args[1];
	bool		found;

	args[0] = UUIDPGetDatum(tenant);
	SPI_connect();
	if (SPI_execute_with_args("SELECT FROM mandant.tenant t WHERE t.id = $1",
							  1, argtypes, args, NULL, true, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not look up the tenant");
	found = SPI_processed > 0;
	SPI_finish();
	return found;
}

/*
 * ExportShutdown frees the export's SHA-256 (registered with the resource
 * owner) and closes its cursor when the stream ends or its query stops
 * reading it early: nothing of another tenant's rows stays readable.
 * Registered after the SRF's own callback, it runs before that one frees
 * the state; at the end of the stream it is unregistered.
 */
static void
ExportShutdown(Datum arg)
{
	ExportState *state = (ExportState *) DatumGetPointer(arg);

	if (state->sha != NULL)
		pg_cryptohash_free(state->sha);
	state->sha = NULL;
	if (state->portal != NULL)
	{
		Portal		portal = GetPortalByName(state->portal);

		if (portal != NULL && portal == state->portal_ptr && portal->status != PORTAL_ACTIVE)
			PortalDrop(portal, false);
		state->portal = NULL;
		state->portal_ptr = NULL;
	}
}

/*
 * mandant.op_export_tenant_stream(tenant uuid) returns setof text: the
 * tenant as a stream of JSON lines (see the file header), one chunk of up
 * to EXPORT_BATCH lines, joined by newlines, per call.  Internal:
 * mandant.export_tenant_stream() checks its caller first.
 */
Datum
mandant_op_export_tenant_stream(PG_FUNCTION_ARGS)
{
	FuncCallContext *funcctx;
	ExportState *state;

	if (SRF_IS_FIRSTCALL())
	{
		MemoryContext old;
		pg_uuid_t  *tenant;

		funcctx = SRF_FIRSTCALL_INIT();
		if (PG_ARGISNULL(0))
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("tenant must not be null"),
					 errdetail("mandant.export_tenant_stream() was called with NULL."),
					 errhint("Pass the id of the tenant to export.")));
		tenant = PG_GETARG_UUID_P(0);
		MandantCitusRequireTransactionBlock("mandant.export_tenant_stream()");
		/*
		 * A cursor WITH HOLD would read the rest of the stream while its
		 * transaction commits, after the cursors of the export may have
		 * been closed (which, depends on the order of the portals).
		 */
		if (ActivePortal != NULL && (ActivePortal->cursorOptions & CURSOR_OPT_HOLD) != 0)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_CURSOR_STATE),
					 errmsg("mandant.export_tenant_stream() cannot run in a cursor WITH HOLD"),
					 errdetail("The cursor %s outlives its transaction, and the export reads with that transaction's snapshot.",
							   ActivePortal->name[0] ? quote_identifier(ActivePortal->name) : "(unnamed)"),
					 errhint("Run the export as COPY (SELECT mandant.export_tenant_stream(...)) TO STDOUT, or in a cursor without HOLD.")));
		if (!TenantExists(tenant))
			ereport(ERROR,
					(errcode(ERRCODE_MANDANT_TENANT_NOT_FOUND),
					 errmsg("tenant \"%s\" does not exist", MandantUuidText(tenant)),
					 errdetail("No row of mandant.tenant has that id."),
					 errhint("Check the tenant id.")));
		old = MemoryContextSwitchTo(funcctx->multi_call_memory_ctx);
		state = palloc0(sizeof(ExportState));
		memcpy(&state->tenant, tenant, sizeof(pg_uuid_t));
		state->chunk_cxt = AllocSetContextCreate(funcctx->multi_call_memory_ctx,
												 "mandant tenant export chunk",
												 ALLOCSET_DEFAULT_SIZES);
		state->sha = pg_cryptohash_create(PG_SHA256);
		if (state->sha == NULL || pg_cryptohash_init(state->sha) < 0)
			elog(ERROR, "could not start the tenant stream's SHA-256");
		MemoryContextSwitchTo(old);
		RegisterExprContextCallback(((ReturnSetInfo *) fcinfo->resultinfo)->econtext,
									ExportShutdown, PointerGetDatum(state));
		state->sources = ExportSources(funcctx->multi_call_memory_ctx);
		funcctx->user_fctx = state;
	}
	funcctx = SRF_PERCALL_SETUP();
	state = funcctx->user_fctx;

	for (;;)
	{
		if (state->chunk != NULL)
		{
			text	   *chunk = state->chunk;

			state->chunk = NULL;
			SRF_RETURN_NEXT(funcctx, PointerGetDatum(chunk));
		}
		if (state->portal != NULL)
		{
			ExportFetch(state);
			continue;
		}
		if (state->next_source < list_length(state->sources))
		{
			ExportSource *source = list_nth(state->sources, state->next_source++);

			ExportOpenCursor(state, source, funcctx->multi_call_memory_ctx);
			continue;
		}
		if (!state->done)
		{
			char	   *trailer = psprintf("{\"end\":{\"lines\":" INT64_FORMAT ",\"sha256\":\"%s\"}}",
										   state->lines, StreamDigestHex(state->sha));

			ExportShutdown(PointerGetDatum(state));
			state->done = true;
			SRF_RETURN_NEXT(funcctx, CStringGetTextDatum(trailer));
		}
		/* the callback's state goes with the SRF's memory */
		UnregisterExprContextCallback(((ReturnSetInfo *) fcinfo->resultinfo)->econtext,
									  ExportShutdown, PointerGetDatum(state));
		SRF_RETURN_DONE(funcctx);
	}
}

/* ---- import ---------------------------------------------------------------- */

/* A tenant table of the stream's header, and how its rows are written. */
typedef struct ImportTable
{
	Oid			relid;
	char	   *name;			/* as the header names it */
	char	   *json_name;		/* the same as a JSON string, quotes included */
	int			json_len;
	Datum		tenant_column;	/* name */
} ImportTable;

typedef struct ImportState
{
	MemoryContext cxt;
	bool		have_header;
	bool		ended;
	pg_uuid_t	tenant;
	char	   *slug;
	ImportTable *tables;
	int			ntables;
	int64		lines;			/* lines read, the trailer not counted */
	int64		rows;			/* rows of tenant tables */
	int64		items;			/* lines of the other kinds */
	pg_cryptohash_ctx *sha;
	/* the batch: lines of one table (batch_table >= 0) or one other kind */
	int			batch_table;
	char		batch_kind[32];
	StringInfoData batch;
	int			batch_lines;
	int64		batch_first;
	ArrayBuildState *skipped;	/* members without an account here */
} ImportState;

/* The import of the running statement, or NULL. */
static ImportState *import_state = NULL;

/* The line being read, for error messages. */
static int64 import_line = 0;

/*
 * ForgetImport is the reset callback of an import's memory: whether the
 * import ends or its (sub)transaction aborts, the state goes with it.
 */
static void
ForgetImport(void *arg)
{
	import_state = NULL;
}

/*
 * ImportErrorContext names the line (or the batch of lines) an error of
 * the import is about.
 */
static void
ImportErrorContext(void *arg)
{
	ImportState *state = (ImportState *) arg;

	if (state->batch_lines > 0 && import_line == 0)
		errcontext("lines " INT64_FORMAT " to " INT64_FORMAT " of the tenant stream",
				   state->batch_first, state->batch_first + state->batch_lines - 1);
	else if (import_line > 0)
		errcontext("line " INT64_FORMAT " of the tenant stream", import_line);
}

/*
 * RaiseBadStream reports a line that breaks the stream's format.
 */
static void
pg_attribute_noreturn()
RaiseBadStream(const char *message, const char *detail)
{
	ereport(ERROR,
			(errcode(ERRCODE_BAD_COPY_FILE_FORMAT),
			 errmsg("%s", message),
			 errdetail("%s", detail),
			 errhint("Import the whole output of mandant.export_tenant_stream(), unchanged, with COPY mandant.tenant_import FROM STDIN (see \"Moving a tenant\" in README.md).")));
}

/*
 * mandant.op_tenant_import_open() returns void: starts the import of one
 * stream for the running statement (the BEFORE STATEMENT trigger of
 * mandant.tenant_import, after the gate).  Refuses an import inside
 * another.
 */
Datum
mandant_op_tenant_import_open(PG_FUNCTION_ARGS)
{
	MemoryContext cxt;
	MemoryContextCallback *callback;
	ImportState *state;

	if (import_state != NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_IN_USE),
				 errmsg("a tenant import is already running"),
				 errdetail("Code that the running import called tried to start another one."),
				 errhint("Import one tenant per statement.")));
	cxt = AllocSetContextCreate(CurTransactionContext, "mandant tenant import",
								ALLOCSET_DEFAULT_SIZES);
	state = MemoryContextAllocZero(cxt, sizeof(ImportState));
	state->cxt = cxt;
	state->batch_table = -1;
	callback = MemoryContextAlloc(cxt, sizeof(MemoryContextCallback));
	callback->func = ForgetImport;
	callback->arg = NULL;
	MemoryContextRegisterResetCallback(cxt, callback);
	import_state = state;
	PG_RETURN_VOID();
}

/*
 * ImportHeader checks the stream's first line, creates the tenant
 * (mandant.op_import_tenant_begin) and learns how to write the rows of
 * each table the header names.
 */
static void
ImportHeader(ImportState *state, const char *line)
{
	Jsonb	   *header = DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum(line)));
	Oid			argtypes[1] = {JSONBOID};
	Datum		args[1];
	bool		isnull;
	Datum		value;
	uint64		i;

	args[0] = JsonbPGetDatum(header);
	SPI_connect();
	if (SPI_execute_with_args("SELECT $1 ->> 'format', $1 -> 'version' = '" CppAsString2(STREAM_VERSION) "',"
							  " $1 ->> 'version', $1 #>> '{tenant,slug}'",
							  1, argtypes, args, NULL, true, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not read the tenant stream's header");
	if (SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1) == NULL ||
		strcmp(SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1), STREAM_FORMAT) != 0)
		RaiseBadStream("not a mandant tenant stream",
					   "The first line has no \"format\": \"" STREAM_FORMAT "\".");
	value = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull);
	if (isnull || !DatumGetBool(value))
		ereport(ERROR,
				(errcode(ERRCODE_BAD_COPY_FILE_FORMAT),
				 errmsg("unsupported tenant stream version %s",
						SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 3) ?
						SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 3) : "NULL"),
				 errdetail("This mandant reads tenant streams of version " CppAsString2(STREAM_VERSION) "."),
				 errhint("Export again with this version of mandant.")));

	state->slug = MemoryContextStrdup(state->cxt,
									  SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 4) ?
									  SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 4) : "");

	/* the checks of import_tenant; the tenant's row */
	if (SPI_execute_with_args("SELECT mandant.op_import_tenant_begin($1 -> 'tenant', $1 -> 'tables')",
							  1, argtypes, args, NULL, false, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not begin the tenant import");
	value = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
	memcpy(&state->tenant, DatumGetUUIDP(value), sizeof(pg_uuid_t));

	/* the tables the header names, in its order */
	if (SPI_execute_with_args("SELECT n.name, x.relid::oid, x.tenant_column"
							  " FROM jsonb_array_elements_text($1 -> 'tables') WITH ORDINALITY n (name, i)"
							  " JOIN mandant.tenant_tables() x ON x.relid::text = n.name ORDER BY n.i",
							  1, argtypes, args, NULL, true, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not read the tenant tables of the stream");
	state->tables = MemoryContextAllocZero(state->cxt, sizeof(ImportTable) * Max(SPI_processed, 1));
	state->ntables = (int) SPI_processed;
	for (i = 0; i < SPI_processed; i++)
	{
		HeapTuple	row = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		ImportTable *table = &state->tables[i];
		MemoryContext old = MemoryContextSwitchTo(state->cxt);
		StringInfoData json_name;

		table->name = SPI_getvalue(row, desc, 1);
		table->relid = DatumGetObjectId(SPI_getbinval(row, desc, 2, &isnull));
		table->tenant_column = SPI_getbinval(row, desc, 3, &isnull);
		table->tenant_column = datumCopy(table->tenant_column, false, NAMEDATALEN);
		initStringInfo(&json_name);
		escape_json(&json_name, table->name);
		table->json_name = json_name.data;
		table->json_len = json_name.len;
		MemoryContextSwitchTo(old);
	}
	SPI_finish();

	state->sha = pg_cryptohash_create(PG_SHA256);
	if (state->sha == NULL || pg_cryptohash_init(state->sha) < 0)
		elog(ERROR, "could not start the tenant stream's SHA-256");
	state->skipped = initArrayResult(TEXTOID, state->cxt, false);
	state->have_header = true;
}

/*
 * ImportFlush writes the batch: a table's rows through mandant.import_rows()
 * (as the table's owner, in replica mode), other lines through
 * mandant.op_import_tenant_items().
 */
static void
ImportFlush(ImportState *state)
{
	Datum		rows;

	if (state->batch_lines == 0)
		return;
	import_line = 0;			/* errors name the batch's lines */
	appendStringInfoChar(&state->batch, ']');
	rows = DirectFunctionCall1(jsonb_in, CStringGetDatum(state->batch.data));

	if (state->batch_table >= 0)
	{
		ImportTable *table = &state->tables[state->batch_table];
		Oid			argtypes[4] = {REGCLASSOID, NAMEOID, UUIDOID, JSONBOID};
		Datum		args[4];
		bool		isnull;

		args[0] = ObjectIdGetDatum(table->relid);
		args[1] = table->tenant_column;
		args[2] = UUIDPGetDatum(&state->tenant);
		args[3] = rows;
		SPI_connect();
		if (SPI_execute_with_args("SELECT mandant.import_rows($1, $2, $3, $4)",
								  4, argtypes, args, NULL, false, 0) != SPI_OK_SELECT)
			elog(ERROR, "could not insert the rows of %s", table->name);
		state->rows += DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
		SPI_finish();
	}
	else
	{
		Oid			argtypes[3] = {UUIDOID, TEXTOID, JSONBOID};
		Datum		args[3];
		Datum		skipped;
		bool		isnull;

		args[0] = UUIDPGetDatum(&state->tenant);
		args[1] = CStringGetTextDatum(state->batch_kind);
		args[2] = rows;
		SPI_connect();
		if (SPI_execute_with_args("SELECT mandant.op_import_tenant_items($1, $2, $3)",
								  3, argtypes, args, NULL, false, 0) != SPI_OK_SELECT)
			elog(ERROR, "could not import the stream's %s lines", state->batch_kind);
		skipped = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
		if (!isnull)
		{
			ArrayType  *array = DatumGetArrayTypeP(skipped);
			Datum	   *emails;
			bool	   *nulls;
			int			n;
			int			i;

			deconstruct_array(array, TEXTOID, -1, false, TYPALIGN_INT, &emails, &nulls, &n);
			for (i = 0; i < n; i++)
				if (!nulls[i])
					accumArrayResult(state->skipped, emails[i], false, TEXTOID, state->cxt);
		}
		SPI_finish();
		state->items += state->batch_lines;
	}
	resetStringInfo(&state->batch);
	state->batch_lines = 0;
}

/*
 * ImportBatchAdd adds value (a row or an item, JSON text of len bytes) to
 * the batch of table (>= 0) or kind, writing the batch first when it is of
 * another table or kind or full.
 */
static void
ImportBatchAdd(ImportState *state, int table, const char *kind, int kind_len,
			   const char *value, int len)
{
	bool		same = table >= 0 ? state->batch_table == table :
		(state->batch_table < 0 && kind_len < (int) sizeof(state->batch_kind) &&
		 strncmp(state->batch_kind, kind, kind_len) == 0 && state->batch_kind[kind_len] == '\0');

	if (state->batch_lines > 0 &&
		(!same || state->batch_lines >= IMPORT_BATCH_ROWS || state->batch.len + len > IMPORT_BATCH_BYTES))
		ImportFlush(state);
	if (state->batch_lines == 0)
	{
		if (state->batch.data == NULL)
		{
			MemoryContext old = MemoryContextSwitchTo(state->cxt);

			initStringInfo(&state->batch);
			MemoryContextSwitchTo(old);
		}
		state->batch_table = table;
		if (table < 0)
		{
			memcpy(state->batch_kind, kind, kind_len);
			state->batch_kind[kind_len] = '\0';
		}
		state->batch_first = state->lines;
		appendStringInfoChar(&state->batch, '[');
	}
	else
		appendStringInfoChar(&state->batch, ',');
	appendBinaryStringInfo(&state->batch, value, len);
	state->batch_lines++;
}

/* The kinds of lines after the header, besides "table" and "end". */
static const char *const item_kinds[] = {
	"role", "membership", "configHistory", "config", "quotaChange", "charged", "auditEvent", "auditSeal"
};

/*
 * ImportTrailer checks the last line: the number of lines before it and
 * their SHA-256.
 */
static void
ImportTrailer(ImportState *state, const char *line)
{
	Jsonb	   *trailer = DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum(line)));
	Oid			argtypes[1] = {JSONBOID};
	Datum		args[1];
	char	   *lines;
	char	   *sha256;
	char	   *ours;

	ImportFlush(state);
	args[0] = JsonbPGetDatum(trailer);
	SPI_connect();
	if (SPI_execute_with_args("SELECT $1 #>> '{end,lines}', $1 #>> '{end,sha256}'",
							  1, argtypes, args, NULL, true, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not read the tenant stream's trailer");
	lines = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);
	sha256 = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2);
	ours = StreamDigestHex(state->sha);
	if (lines == NULL || strcmp(lines, psprintf(INT64_FORMAT, state->lines)) != 0)
		RaiseBadStream("tenant stream has lost or gained lines",
					   psprintf("The trailer counts %s lines before it; " INT64_FORMAT " arrived.",
								lines ? lines : "no", state->lines));
	if (sha256 == NULL || strcmp(sha256, ours) != 0)
		RaiseBadStream("tenant stream was changed on the way",
					   psprintf("The SHA-256 of its lines is %s; the trailer says %s.",
								ours, sha256 ? sha256 : "nothing"));
	SPI_finish();
	pg_cryptohash_free(state->sha);
	state->sha = NULL;
	state->ended = true;
}

/*
 * CheckJsonObject raises unless value (len bytes, what follows a line's
 * kind) is one JSON object: lines are pasted into a batch's JSON array, so
 * one line must not bring two values or join its neighbour.
 */
static void
CheckJsonObject(const char *value, int len, const char *kind, int kind_len)
{
	if (len >= 2 && value[0] == '{')
	{
		JsonLexContext *lex = makeJsonLexContextCstringLen((char *) value, len,
														   GetDatabaseEncoding(), false);

		if (pg_parse_json(lex, &nullSemAction) == JSON_SUCCESS)
			return;
	}
	RaiseBadStream("line of a tenant stream does not hold one JSON object",
				   psprintf("What follows {\"%.*s\": must be one JSON object and nothing else.",
							Min(kind_len, 64), kind));
}

/*
 * ImportLine takes one line of the stream.
 */
static void
ImportLine(ImportState *state, const char *line, int len)
{
	const char *key;
	int			key_len;
	const char *value;
	int			i;

	import_line = state->lines + 1;
	if (state->ended)
		RaiseBadStream("tenant stream goes on after its trailer",
					   "The line {\"end\": ...} must be the last.");
	if (len < 5 || line[0] != '{' || line[1] != '"' || line[len - 1] != '}')
		RaiseBadStream("line of a tenant stream is not a JSON object",
					   "Every line is one JSON object that starts with {\"<kind>\":.");
	key = line + 2;
	for (key_len = 0; key + key_len < line + len && isalpha((unsigned char) key[key_len]); key_len++)
		;
	if (key + key_len + 2 > line + len || key[key_len] != '"' || key[key_len + 1] != ':')
		RaiseBadStream("line of a tenant stream does not start with its kind",
					   "Every line is one JSON object that starts with {\"<kind>\":.");
	value = key + key_len + 2;

	if (!state->have_header)
	{
		if (key_len != 6 || strncmp(key, "format", 6) != 0)
			RaiseBadStream("not a mandant tenant stream",
						   "The first line has no \"format\": \"" STREAM_FORMAT "\".");
		ImportHeader(state, line);
		StreamHashLine(state->sha, line, len);
		state->lines++;
		return;
	}
	if (key_len == 3 && strncmp(key, "end", 3) == 0)
	{
		ImportTrailer(state, line);
		return;
	}
	StreamHashLine(state->sha, line, len);
	state->lines++;

	if (key_len == 5 && strncmp(key, "table", 5) == 0)
	{
		const char *name_end = value;

		/* the table's name, a JSON string, is compared as it is written */
		if (*name_end == '"')
			for (name_end++; name_end < line + len && *name_end != '"'; name_end++)
				if (*name_end == '\\')
					name_end++;
		if (*value != '"' || name_end + 8 > line + len || strncmp(name_end + 1, ",\"row\":", 7) != 0)
			RaiseBadStream("row line of a tenant stream is malformed",
						   "A row line is {\"table\": \"<table>\", \"row\": {...}}.");
		name_end++;
		for (i = 0; i < state->ntables; i++)
			if (state->tables[i].json_len == name_end - value &&
				memcmp(state->tables[i].json_name, value, name_end - value) == 0)
				break;
		if (i == state->ntables)
			RaiseBadStream("row of a table the header does not name",
						   psprintf("The row is of %.*s.", (int) Min(name_end - value, 200), value));
		value = name_end + 7;
		CheckJsonObject(value, line + len - 1 - value, "row", 3);
		ImportBatchAdd(state, i, NULL, 0, value, line + len - 1 - value);
		return;
	}
	for (i = 0; i < (int) lengthof(item_kinds); i++)
		if ((int) strlen(item_kinds[i]) == key_len && strncmp(item_kinds[i], key, key_len) == 0)
			break;
	if (i == (int) lengthof(item_kinds))
		RaiseBadStream("unknown kind of line in a tenant stream",
					   psprintf("The line's kind is \"%.*s\".", Min(key_len, 64), key));
	CheckJsonObject(value, line + len - 1 - value, key, key_len);
	ImportBatchAdd(state, -1, key, key_len, value, line + len - 1 - value);
}

/*
 * ImportChunk takes one row of mandant.tenant_import: one line, or a chunk
 * of lines joined by newlines as export_tenant_stream() returns them.
 */
static void
ImportChunk(ImportState *state, char *chunk)
{
	char	   *line = chunk;

	for (;;)
	{
		char	   *end = strchr(line, '\n');

		if (end != NULL)
			*end = '\0';
		ImportLine(state, line, strlen(line));
		if (end == NULL)
			break;
		line = end + 1;
	}
}

/*
 * ImportFinish ends the import at the end of the statement: the trailer
 * must have come; foreign keys, sequences and the audit chain are checked
 * by mandant.op_import_tenant_finish().
 */
static void
ImportFinish(ImportState *state)
{
	Oid			argtypes[3] = {UUIDOID, REGCLASSARRAYOID, TEXTARRAYOID};
	Datum		args[3];
	Datum	   *relids = palloc(sizeof(Datum) * Max(state->ntables, 1));
	int			i;

	if (!state->have_header)
		RaiseBadStream("tenant stream is empty",
					   "No line arrived.");
	if (!state->ended)
		RaiseBadStream("tenant stream ended before its trailer",
					   psprintf(INT64_FORMAT " lines arrived; the last line, {\"end\": ...}, did not.",
								state->lines));
	for (i = 0; i < state->ntables; i++)
		relids[i] = ObjectIdGetDatum(state->tables[i].relid);
	args[0] = UUIDPGetDatum(&state->tenant);
	args[1] = PointerGetDatum(construct_array(relids, state->ntables, REGCLASSOID,
											  sizeof(Oid), true, TYPALIGN_INT));
	args[2] = makeArrayResult(state->skipped, CurrentMemoryContext);
	SPI_connect();
	if (SPI_execute_with_args("SELECT mandant.op_import_tenant_finish($1, $2, $3)",
							  3, argtypes, args, NULL, false, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not finish the tenant import");
	SPI_finish();
	ereport(NOTICE,
			(errmsg("tenant \"%s\" imported: " INT64_FORMAT " rows of %d tables, " INT64_FORMAT " other records",
					state->slug, state->rows, state->ntables, state->items),
			 errdetail("Its id is %s; its audit trail verified.", MandantUuidText(&state->tenant))));
}

/*
 * mandant.tenant_import_line() returns trigger: the BEFORE INSERT row
 * trigger of mandant.tenant_import takes one line (and keeps it out of the
 * table); as its AFTER STATEMENT trigger it finishes the import.  The
 * BEFORE STATEMENT trigger opened it.
 */
Datum
mandant_tenant_import_line(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;
	ImportState *state = import_state;
	ErrorContextCallback errcallback;

	if (!CALLED_AS_TRIGGER(fcinfo) || !TRIGGER_FIRED_BY_INSERT(trigdata->tg_event) ||
		(TRIGGER_FIRED_FOR_ROW(trigdata->tg_event) && !TRIGGER_FIRED_BEFORE(trigdata->tg_event)) ||
		strcmp(RelationGetRelationName(trigdata->tg_relation), "tenant_import") != 0 ||
		RelationGetNamespace(trigdata->tg_relation) != get_namespace_oid("mandant", false))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("mandant.tenant_import_line() must be fired by an insert into mandant.tenant_import"),
				 errdetail("It was called another way."),
				 errhint("Import a tenant with COPY mandant.tenant_import FROM STDIN.")));
	if (state == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("no tenant import is running"),
				 errdetail("The statement's import was not opened by mandant.tenant_import's first trigger."),
				 errhint("Import a tenant with COPY mandant.tenant_import FROM STDIN.")));

	errcallback.callback = ImportErrorContext;
	errcallback.arg = state;
	errcallback.previous = error_context_stack;
	error_context_stack = &errcallback;

	if (TRIGGER_FIRED_FOR_ROW(trigdata->tg_event))
	{
		HeapTuple	tuple = trigdata->tg_trigtuple;
		bool		isnull;
		Datum		value = heap_getattr(tuple, 1, RelationGetDescr(trigdata->tg_relation), &isnull);

		if (isnull)
			RaiseBadStream("line of a tenant stream is null", "Every line is one JSON object.");
		ImportChunk(state, text_to_cstring(DatumGetTextPP(value)));
		error_context_stack = errcallback.previous;
		import_line = 0;
		return PointerGetDatum(NULL);	/* the table keeps nothing */
	}
	import_line = 0;
	ImportFlush(state);
	ImportFinish(state);
	error_context_stack = errcallback.previous;
	MemoryContextDelete(state->cxt);	/* ForgetImport */
	return PointerGetDatum(NULL);
}
