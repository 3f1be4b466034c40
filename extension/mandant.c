/*-------------------------------------------------------------------------
 *
 * mandant.c
 *		Module entry point: preload check, settings, reserved prefix.
 *
 * mandant must be loaded through shared_preload_libraries.  The tenant
 * context lives in custom settings whose check hooks are what makes it
 * tamper-proof; if the library were loaded lazily, a session could create a
 * placeholder "app.current_tenant" before the hooks exist, and a parallel
 * worker could start without them.  _PG_init therefore refuses to run
 * anywhere but in the postmaster's preload, which also makes CREATE
 * EXTENSION fail with a hint on a misconfigured server.
 *
 * Copyright (c) 2026, the mandant developers
 *
 * IDENTIFICATION
 *		extension/mandant.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "fmgr.h"
#include "miscadmin.h"
#include "utils/guc.h"

#include "mandant.h"

PG_MODULE_MAGIC;

void		_PG_init(void);

/*
 * _PG_init checks that the library is being preloaded, then defines the
 * context variables and mandant's settings and reserves the "mandant"
 * settings prefix.
 */
void
_PG_init(void)
{
	if (!process_shared_preload_libraries_in_progress)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("mandant must be loaded via \"shared_preload_libraries\""),
				 errdetail("The library was loaded into a running session, where the tenant context cannot be protected."),
				 errhint("Add shared_preload_libraries = 'mandant' to postgresql.conf (append it to any libraries already listed) and restart the server.")));

	MandantDefineContextVariables();
	MandantDefineAuditVariables();
	MandantDefineOutboxVariables();

	MarkGUCPrefixReserved("mandant");
}
