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

/*
 * ClaimUuid reads a uuid claim in canonical form; raises MD051 when it is
 * not one.
 */
static pg_uuid_t *
ClaimUuid(const char *value, const char *claim)
{
	pg_uuid_t  *uuid = palloc(sizeof(pg_uuid_t));

	if (value == NULL || !MandantParseUuid(value, uuid))
		MandantInvalidToken(psprintf("Claim %s is not a uuid.", claim));
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

/* CheckNotDenied refuses a jti on the denylist (logout). */
static void
CheckNotDenied(pg_uuid_t *jti)
{
	bool		found;

	(void) MandantFetchColumn("revoked_jti", "revoked_jti_pkey", F_UUID_EQ, UUIDPGetDatum(jti),
							  "jti", &found);
	if (found)
		RevokedToken("The token was revoked (logout).");
}

/*
 * CheckUserToken checks that the user exists, is active and has the token's
 * token_version, and still holds the token's role in its tenant.
 */
static void
CheckUserToken(MandantJwtClaims *claims, pg_uuid_t *user, pg_uuid_t *tenant)
{
	char	   *status;
	int64		token_version;

	if (!claims->has_ver)
		MandantInvalidToken("The token lacks the claim ver.");
	if (!MandantFetchUser(user, &status, &token_version))
		RevokedToken("The user no longer exists.");
	if (strcmp(status, "active") != 0)
		RevokedToken("The user is disabled.");
	if (token_version != claims->ver)
		RevokedToken("The user's tokens were revoked (password change, reset or sign-out everywhere).");

	if (tenant)
	{
		char	   *role = MandantMemberRole(tenant, user);

		if (role == NULL)
			RevokedToken("The user is no longer a member of the token's tenant.");
		if (claims->role == NULL || strcmp(role, claims->role) != 0)
			RevokedToken("The user's role in the tenant changed.");
	}
}

/* CheckServiceToken checks that the service account exists and is active. */
static void
CheckServiceToken(pg_uuid_t *account)
{
	bool		found;
	Datum		status = MandantFetchColumn("service_account", "service_account_pkey", F_UUID_EQ,
											UUIDPGetDatum(account), "status", &found);

	if (!found)
		RevokedToken("The service account no longer exists.");
	if (strcmp(TextDatumGetCString(status), "active") != 0)
		RevokedToken("The service account is disabled.");
}

/* AuthenticationAnswer describes the context authenticate() set. */
static Datum
AuthenticationAnswer(MandantJwtClaims *claims, bool m2m)
{
	JsonbParseState *state = NULL;
	JsonbValue *answer;

	(void) pushJsonbValue(&state, WJB_BEGIN_OBJECT, NULL);
	MandantPushTextPair(&state, "type", m2m ? "m2m" : "user");
	if (m2m)
		MandantPushTextPair(&state, "serviceAccountId", claims->sub);
	MandantPushTextPair(&state, "userId", m2m ? NULL : claims->sub);
	MandantPushTextPair(&state, "tenantId", claims->tid);
	MandantPushTextPair(&state, "tenantSlug", claims->tslug);
	MandantPushTextPair(&state, "role", claims->role);
	MandantPushKey(&state, "scopes", strlen("scopes"));
	(void) pushJsonbValue(&state, WJB_BEGIN_ARRAY, NULL);
	for (int i = 0; i < MANDANT_SCOPE_COUNT; i++)
	{
		JsonbValue	scope;
		const char *name = MandantScopeName(1 << i);

		if ((claims->scopes & (1 << i)) == 0)
			continue;
		scope.type = jbvString;
		scope.val.string.val = (char *) name;
		scope.val.string.len = strlen(name);
		(void) pushJsonbValue(&state, WJB_ELEM, &scope);
	}
	(void) pushJsonbValue(&state, WJB_END_ARRAY, NULL);
	MandantPushTextPair(&state, "expiresAt", MandantIsoUtc(claims->exp));
	answer = pushJsonbValue(&state, WJB_END_OBJECT, NULL);
	return JsonbPGetDatum(JsonbValueToJsonb(answer));
}

/*
 * MandantAuthenticate verifies an access token and sets tenant, user and
 * scopes for the rest of the transaction; returns the answer of
 * mandant.authenticate().  warn_as names the caller in the warnings about
 * context mistakes, or is NULL when the caller knows the context's extent
 * (mandant.http_call(): one request, one statement).
 */
Datum
MandantAuthenticate(text *token, const char *warn_as)
{
	MandantJwtClaims  *claims;
	pg_uuid_t  *subject;
	pg_uuid_t  *tenant = NULL;
	bool		m2m;

	if (token == NULL)
		MandantInvalidToken("No token was given.");
	claims = MandantVerifyToken(token);
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
	if (warn_as != NULL)
		MandantWarnContextMistakes(warn_as);

	MandantAssignContext(tenant, m2m ? NULL : subject, claims->scopes);
	return AuthenticationAnswer(claims, m2m);
}

/*
 * mandant.authenticate(token text) returns jsonb: verifies an access token
 * and sets tenant, user and scopes for the rest of the transaction.  For
 * anyone: the token is the credential.
 */
Datum
mandant_authenticate(PG_FUNCTION_ARGS)
{
	MandantRefuseInPushedDownQuery("mandant.authenticate()");
	PG_RETURN_DATUM(MandantAuthenticate(PG_ARGISNULL(0) ? NULL : PG_GETARG_TEXT_PP(0),
										"mandant.authenticate()"));
}
