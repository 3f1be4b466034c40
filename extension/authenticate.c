/*-------------------------------------------------------------------------
 *
 * authenticate.c
 *		mandant.authenticate(): an access token checked against what only
 *		the database knows, then the tenant context it grants.
 *
 * jwt.c has checked form, signature, issuer and times.  What is left is
 * revocation: the jti is not on the denylist (logout), the user is active
 * with the token's token_version (bumped by a password change, a reset or
 * a sign-out everywhere) and still holds the token's role in its tenant,
 * or the service account is active; and the tenant may be entered.  Then
 * tenant, user and scopes are set for the rest of the transaction and
 * described in the answer.  Every refusal is MD051 (invalid) or MD053
 * (revoked), with the reason in the detail.
 *
 * All lookups go straight through the primary key indexes (tenancy.c),
 * with a fresh snapshot so that a revocation committed a moment ago
 * counts; nothing is cached between calls.
 *
 * Copyright (c) 2026, the mandant developers
 *
 * IDENTIFICATION
 *		extension/authenticate.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <ctype.h>

#include "fmgr.h"
#include "lib/stringinfo.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/json.h"
#include "utils/jsonb.h"
#include "utils/uuid.h"

#include "mandant.h"

PG_FUNCTION_INFO_V1(mandant_authenticate);

/* HexDigit returns the value of a hexadecimal digit (checked by the caller). */
static int
HexDigit(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	return tolower((unsigned char) c) - 'a' + 10;
}

/*
 * ClaimUuid reads a uuid claim in canonical form; raises MD051 when it is
 * not one.
 */
static pg_uuid_t *
ClaimUuid(const char *value, const char *claim)
{
	pg_uuid_t  *uuid = palloc(sizeof(pg_uuid_t));
	int			n = 0;

	/* canonical form only: 8-4-4-4-12 lower or upper hex */
	if (value == NULL || strlen(value) != 36)
		MandantInvalidToken(psprintf("Claim %s is not a uuid.", claim));
	for (int i = 0; i < 36; i++)
	{
		char		c = value[i];

		if (i == 8 || i == 13 || i == 18 || i == 23)
		{
			if (c != '-')
				MandantInvalidToken(psprintf("Claim %s is not a uuid.", claim));
			continue;
		}
		if (!isxdigit((unsigned char) c))
			MandantInvalidToken(psprintf("Claim %s is not a uuid.", claim));
		uuid->data[n / 2] = (n % 2 == 0) ? (HexDigit(c) << 4) : (uuid->data[n / 2] | HexDigit(c));
		n++;
	}
	return uuid;
}

/* RevokedToken raises MD053 with why as the detail. */
static void
RevokedToken(const char *why)
{
	ereport(ERROR,
			(errcode(ERRCODE_MANDANT_TOKEN_REVOKED),
			 errmsg("access token revoked"),
			 errdetail("%s", why),
			 errhint("Log in again.")));
}

/*
 * FetchById reads one column of the row of a table whose primary key is
 * the uuid id; returns false when there is no such row.
 */
static bool
FetchById(const char *table, const char *pkey, pg_uuid_t *id, const char *column,
		  Datum *value)
{
	MandantIndexKey key = {UUIDPGetDatum(id), F_UUID_EQ, false};
	bool		isnull;

	return MandantFetchByIndex(table, pkey, 1, &key, 1, &column, value, &isnull);
}

/* CheckNotDenied refuses a jti on the denylist (logout). */
static void
CheckNotDenied(pg_uuid_t *jti)
{
	Datum		value;

	if (FetchById("revoked_jti", "revoked_jti_pkey", jti, "jti", &value))
		RevokedToken("The token was revoked (logout).");
}

/*
 * CheckUserToken checks that the user exists, is active and has the token's
 * token_version, and still holds the token's role in its tenant.
 */
static void
CheckUserToken(MandantJwtClaims *claims, pg_uuid_t *user, pg_uuid_t *tenant)
{
	MandantIndexKey user_key = {UUIDPGetDatum(user), F_UUID_EQ, false};
	const char *user_columns[] = {"status", "token_version"};
	Datum		values[2];
	bool		isnull[2];

	if (!claims->has_ver)
		MandantInvalidToken("The token lacks the claim ver.");
	if (!MandantFetchByIndex("users", "users_pkey", 1, &user_key, 2, user_columns, values, isnull))
		RevokedToken("The user no longer exists.");
	if (strcmp(TextDatumGetCString(values[0]), "active") != 0)
		RevokedToken("The user is disabled.");
	if (DatumGetInt64(values[1]) != claims->ver)
		RevokedToken("The user's tokens were revoked (password change, reset or sign-out everywhere).");

	if (tenant)
	{
		MandantIndexKey member_key[2] = {
			{UUIDPGetDatum(tenant), F_UUID_EQ, false},
			{UUIDPGetDatum(user), F_UUID_EQ, false}
		};
		const char *role_column = "role";
		Datum		role;
		bool		role_isnull;

		if (!MandantFetchByIndex("membership", "membership_pkey", 2, member_key, 1,
								 &role_column, &role, &role_isnull))
			RevokedToken("The user is no longer a member of the token's tenant.");
		if (claims->role == NULL || strcmp(TextDatumGetCString(role), claims->role) != 0)
			RevokedToken("The user's role in the tenant changed.");
	}
}

/* CheckServiceToken checks that the service account exists and is active. */
static void
CheckServiceToken(pg_uuid_t *account)
{
	Datum		status;

	if (!FetchById("service_account", "service_account_pkey", account, "status", &status))
		RevokedToken("The service account no longer exists.");
	if (strcmp(TextDatumGetCString(status), "active") != 0)
		RevokedToken("The service account is disabled.");
}

/* AuthenticationAnswer describes the context authenticate() set. */
static Datum
AuthenticationAnswer(MandantJwtClaims *claims, bool m2m)
{
	StringInfoData json;
	bool		first = true;

	initStringInfo(&json);
	appendStringInfo(&json, "{\"type\": \"%s\", ", m2m ? "m2m" : "user");
	if (m2m)
		appendStringInfo(&json, "\"serviceAccountId\": \"%s\", \"userId\": null, ", claims->sub);
	else
		appendStringInfo(&json, "\"userId\": \"%s\", ", claims->sub);
	if (claims->tid)
		appendStringInfo(&json, "\"tenantId\": \"%s\", ", claims->tid);
	else
		appendStringInfoString(&json, "\"tenantId\": null, ");
	appendStringInfoString(&json, "\"tenantSlug\": ");
	if (claims->tslug)
		escape_json(&json, claims->tslug);
	else
		appendStringInfoString(&json, "null");
	appendStringInfoString(&json, ", \"role\": ");
	if (claims->role)
		escape_json(&json, claims->role);
	else
		appendStringInfoString(&json, "null");
	appendStringInfoString(&json, ", \"scopes\": [");
	for (int i = 0; i < MANDANT_SCOPE_COUNT; i++)
	{
		if ((claims->scopes & (1 << i)) == 0)
			continue;
		appendStringInfo(&json, "%s\"%s\"", first ? "" : ", ", MandantScopeName(1 << i));
		first = false;
	}
	appendStringInfo(&json, "], \"expiresAt\": \"%s\"}", MandantIsoUtc(claims->exp));
	return DirectFunctionCall1(jsonb_in, CStringGetDatum(json.data));
}

/*
 * mandant.authenticate(token text) returns jsonb: verifies an access token
 * and sets tenant, user and scopes for the rest of the transaction.  For
 * anyone: the token is the credential.
 */
Datum
mandant_authenticate(PG_FUNCTION_ARGS)
{
	MandantJwtClaims  *claims;
	pg_uuid_t  *subject;
	pg_uuid_t  *tenant = NULL;
	bool		m2m;

	if (PG_ARGISNULL(0))
		MandantInvalidToken("No token was given.");
	claims = MandantVerifyToken(PG_GETARG_TEXT_PP(0));
	m2m = strcmp(claims->typ, "m2m") == 0;
	if (!m2m && strcmp(claims->typ, "access") != 0)
		MandantInvalidToken(psprintf("A token of type \"%s\" is not an access token.", claims->typ));
	subject = ClaimUuid(claims->sub, "sub");
	if (claims->tid)
		tenant = ClaimUuid(claims->tid, "tid");

	CheckNotDenied(ClaimUuid(claims->jti, "jti"));
	if (m2m)
		CheckServiceToken(subject);
	else
		CheckUserToken(claims, subject, tenant);
	if (tenant)
		MandantCheckTenantEnterable(tenant);

	MandantAssignContext(tenant, m2m ? NULL : subject, claims->scopes);
	PG_RETURN_DATUM(AuthenticationAnswer(claims, m2m));
}
