/*-------------------------------------------------------------------------
 *
 * member.c
 *		Who may act in a tenant: users, their memberships and the scopes of
 *		their roles, as the C side reads them (set_user, authenticate).
 *
 * A user acts in a tenant when the account exists and is active, a row of
 * mandant.membership ties it to the tenant, and the membership's role
 * exists (the tenant's own role of that name, else the system role).
 * mandant.set_user() (a trusted backend acting for an end user) and
 * mandant.authenticate() (an end user's token) both ask these questions on
 * every call, through the primary keys with a fresh snapshot (lookup.c),
 * so a disabled user or a removed membership stops acting at once.  The
 * answers differ only in their errors: set_user speaks to a backend about
 * its argument, authenticate reports a revoked token (MD053).
 *
 * The identity tables and their SQL functions are in sql/mandant/86*.sql.
 *
 * Copyright (c) 2026, the mandant developers
 *
 * IDENTIFICATION
 *		extension/member.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <string.h>

#include "fmgr.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/uuid.h"

#include "mandant.h"

PG_FUNCTION_INFO_V1(mandant_set_user);

/*
 * MandantFetchUser reads a user's status and token version; false when the
 * user does not exist.  Either output may be NULL.
 */
bool
MandantFetchUser(const pg_uuid_t *user, char **status, int64 *token_version)
{
	MandantIndexKey key = {UUIDPGetDatum((pg_uuid_t *) user), F_UUID_EQ, false};
	const char *const columns[2] = {"status", "token_version"};
	Datum		values[2];
	bool		isnull[2];

	if (!MandantFetchByIndex("users", "users_pkey", 1, &key, 2, columns, values, isnull))
		return false;
	if (status)
		*status = TextDatumGetCString(values[0]);
	if (token_version)
		*token_version = DatumGetInt64(values[1]);
	return true;
}

/*
 * MandantMemberRole returns the role of a user in a tenant (palloc'd), or
 * NULL when the user is not a member.
 */
char *
MandantMemberRole(const pg_uuid_t *tenant, const pg_uuid_t *user)
{
	MandantIndexKey keys[2] = {
		{UUIDPGetDatum((pg_uuid_t *) tenant), F_UUID_EQ, false},
		{UUIDPGetDatum((pg_uuid_t *) user), F_UUID_EQ, false}
	};
	const char *column = "role";
	Datum		role;
	bool		isnull;

	if (!MandantFetchByIndex("membership", "membership_pkey", 2, keys, 1, &column, &role, &isnull))
		return NULL;
	return TextDatumGetCString(role);
}

/*
 * MandantRoleScopes returns the scope bits of a role in a tenant: the
 * tenant's own role of that name, else the system role; -1 when neither
 * exists.
 */
int
MandantRoleScopes(const pg_uuid_t *tenant, const char *role)
{
	MandantIndexKey keys[2] = {
		{UUIDPGetDatum((pg_uuid_t *) tenant), F_UUID_EQ, false},
		{CStringGetTextDatum(role), F_TEXTEQ, false}
	};
	const char *column = "scopes";
	Datum		scopes;
	bool		isnull;

	if (!MandantFetchByIndex("role", "role_key", 2, keys, 1, &column, &scopes, &isnull))
	{
		keys[0].isnull = true;
		if (!MandantFetchByIndex("role", "role_key", 2, keys, 1, &column, &scopes, &isnull))
			return -1;
	}
	return MandantScopeArrayBits(DatumGetArrayTypeP(scopes), false);
}

/*
 * mandant_set_user lets a trusted backend act for an end user: it sets the
 * user and the scopes of the user's role in the current tenant for the
 * rest of the transaction.
 */
Datum
mandant_set_user(PG_FUNCTION_ARGS)
{
	const pg_uuid_t *tenant = MandantCurrentTenant();
	pg_uuid_t  *user;
	char	   *status;
	char	   *role;
	int			scopes;

	MandantRefuseInPushedDownQuery("mandant.set_user()");
	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("user id must not be null"),
				 errdetail("mandant.set_user() was called with NULL."),
				 errhint("Pass the id of a member of the current tenant.")));
	user = PG_GETARG_UUID_P(0);
	MandantCheckTrustedCaller("mandant.set_user(uuid)");
	if (tenant == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_MANDANT_TENANT_REQUIRED),
				 errmsg("no tenant is set"),
				 errdetail("A user acts in a tenant, with the scopes of their role there."),
				 errhint("Call mandant.set_tenant(tenant_id) first, in the same transaction.")));

	role = MandantMemberRole(tenant, user);
	if (role == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("user %s is not a member of tenant %s", MandantUuidText(user), MandantUuidText(tenant)),
				 errdetail("mandant.membership has no row for them."),
				 errhint("Add the user with mandant.add_member() first.")));

	if (!MandantFetchUser(user, &status, NULL) || strcmp(status, "active") != 0)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("user %s is disabled", MandantUuidText(user)),
				 errdetail("A disabled user cannot act, not even through a trusted backend."),
				 errhint("A platform administrator can enable the user again.")));

	scopes = MandantRoleScopes(tenant, role);
	if (scopes < 0)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("role \"%s\" of user %s does not exist", role, MandantUuidText(user)),
				 errdetail("The membership names a role that mandant.role does not have."),
				 errhint("Give the member an existing role with mandant.set_member_role().")));
	MandantAssignContext(tenant, user, scopes);
	PG_RETURN_VOID();
}
