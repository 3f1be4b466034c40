/*-------------------------------------------------------------------------
 *
 * tenant.c
 *		Whether a tenant may be entered, and the settings of the tenants'
 *		lifecycle.
 *
 * A tenant is entered by set_tenant(), authenticate(), login, refresh and
 * service tokens; all of them ask MandantCheckTenantEnterable (SQL:
 * mandant.check_tenant_enterable), so "active, or pending while it is
 * provisioned" is decided in one place and refused with the same MD002 or
 * MD003 everywhere.  The status is read through the primary key with a
 * fresh snapshot (lookup.c), so a suspension committed a moment ago is
 * honoured at once.
 *
 * The lifecycle itself (create, suspend, resume, delete, export, import)
 * is SQL in sql/mandant/88_lifecycle.sql; its two settings are defined
 * here because only a loaded library can define settings.
 *
 * Copyright (c) 2026, the mandant developers
 *
 * IDENTIFICATION
 *		extension/tenant.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "fmgr.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/guc.h"
#include "utils/uuid.h"

#include "mandant.h"

#define TENANT_TABLE			"tenant"
#define TENANT_PKEY				"tenant_pkey"

PG_FUNCTION_INFO_V1(mandant_check_tenant_enterable);

/* How new tenants are provisioned (mandant.provisioning). */
typedef enum MandantProvisioning
{
	MANDANT_PROVISIONING_INTERNAL,
	MANDANT_PROVISIONING_EXTERNAL
} MandantProvisioning;

static const struct config_enum_entry provisioning_options[] = {
	{"internal", MANDANT_PROVISIONING_INTERNAL, false},
	{"external", MANDANT_PROVISIONING_EXTERNAL, false},
	{NULL, 0, false}
};

static int	provisioning = MANDANT_PROVISIONING_INTERNAL;

/* Days a deleted tenant's slug stays taken (mandant.slug_quarantine_days). */
static int	slug_quarantine_days = 30;

/*
 * MandantDefineTenantVariables defines mandant.provisioning: "internal"
 * creates tenants active; "external" creates them pending until a
 * provisioning service completes or fails them; and
 * mandant.slug_quarantine_days: how long a deleted tenant's slug cannot be
 * taken by a new tenant (links and e-mails to the old subdomain must not
 * reach somebody else), 0 for not at all.
 */
void
MandantDefineTenantVariables(void)
{
	DefineCustomEnumVariable("mandant.provisioning",
							 gettext_noop("How new tenants are provisioned: internal (active at once) or external (pending until completed)."),
							 NULL, &provisioning, MANDANT_PROVISIONING_INTERNAL, provisioning_options,
							 PGC_SUSET, GUC_NOT_IN_SAMPLE, NULL, NULL, NULL);
	DefineCustomIntVariable("mandant.slug_quarantine_days",
							gettext_noop("Days a deleted tenant's slug stays unavailable to new tenants (0: none)."),
							NULL, &slug_quarantine_days, 30, 0, 36500,
							PGC_SUSET, GUC_NOT_IN_SAMPLE, NULL, NULL, NULL);
}

/*
 * ClassifyTenantStatus maps a status value to what entering it means.
 */
static MandantTenantStatus
ClassifyTenantStatus(const char *status)
{
	if (strcmp(status, "active") == 0 || strcmp(status, "pending") == 0)
		return MANDANT_TENANT_ENTERABLE;
	if (strcmp(status, "suspended") == 0)
		return MANDANT_TENANT_SUSPENDED;
	return MANDANT_TENANT_GONE;
}

/*
 * LookupTenant finds a tenant by id and classifies its status; when the
 * row exists, its status is returned (palloc'd).
 */
static MandantTenantStatus
LookupTenant(const pg_uuid_t *tenant_id, char **status)
{
	bool		found;
	Datum		value = MandantFetchColumn(TENANT_TABLE, TENANT_PKEY, F_UUID_EQ,
										   UUIDPGetDatum((pg_uuid_t *) tenant_id),
										   "status", &found);

	if (!found)
		return MANDANT_TENANT_MISSING;
	*status = TextDatumGetCString(value);
	return ClassifyTenantStatus(*status);
}

/*
 * TenantSlug returns a tenant's slug for a message (read only when one is
 * raised, never on the way in), or its id when the slug is missing.
 */
static char *
TenantSlug(const pg_uuid_t *tenant_id)
{
	bool		found;
	Datum		value = MandantFetchColumn(TENANT_TABLE, TENANT_PKEY, F_UUID_EQ,
										   UUIDPGetDatum((pg_uuid_t *) tenant_id),
										   "slug", &found);

	return found ? TextDatumGetCString(value) : MandantUuidText(tenant_id);
}

/*
 * MandantCheckTenantEnterable refuses unknown, suspended, failed and
 * deleted tenants (MD002, MD003), naming an existing tenant by its slug.
 */
void
MandantCheckTenantEnterable(const pg_uuid_t *tenant_id)
{
	char	   *status = NULL;

	switch (LookupTenant(tenant_id, &status))
	{
		case MANDANT_TENANT_ENTERABLE:
			return;
		case MANDANT_TENANT_MISSING:
			ereport(ERROR,
					(errcode(ERRCODE_MANDANT_TENANT_NOT_FOUND),
					 errmsg("tenant \"%s\" does not exist", MandantUuidText(tenant_id)),
					 errdetail("No row of mandant.tenant has id %s.", MandantUuidText(tenant_id)),
					 errhint("Check the tenant id; mandant.create_tenant() creates tenants.")));
			break;
		case MANDANT_TENANT_SUSPENDED:
			ereport(ERROR,
					(errcode(ERRCODE_MANDANT_TENANT_SUSPENDED),
					 errmsg("tenant \"%s\" is suspended", TenantSlug(tenant_id)),
					 errdetail("Tenant %s (%s) has status \"%s\"; its data is kept but nobody can enter it.",
							   TenantSlug(tenant_id), MandantUuidText(tenant_id), status),
					 errhint("A platform administrator can resume the tenant.")));
			break;
		case MANDANT_TENANT_GONE:
			ereport(ERROR,
					(errcode(ERRCODE_MANDANT_TENANT_NOT_FOUND),
					 errmsg("tenant \"%s\" is not available", TenantSlug(tenant_id)),
					 errdetail("Tenant %s (%s) has status \"%s\".", TenantSlug(tenant_id),
							   MandantUuidText(tenant_id), status),
					 errhint("Only active tenants, and pending ones during provisioning, can be entered.")));
			break;
	}
}

/*
 * mandant_check_tenant_enterable raises MD002 or MD003 unless the tenant
 * may be entered (mandant.check_tenant_enterable, for the SQL side).
 */
Datum
mandant_check_tenant_enterable(PG_FUNCTION_ARGS)
{
	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("tenant id must not be null"),
				 errdetail("mandant.check_tenant_enterable() was called with NULL."),
				 errhint("Pass the id of an existing tenant.")));
	MandantCheckTenantEnterable(PG_GETARG_UUID_P(0));
	PG_RETURN_VOID();
}
