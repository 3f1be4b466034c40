/*-------------------------------------------------------------------------
 *
 * tokencache.c
 *		The access tokens this backend has verified, with their claims.
 *
 * Checking an RS256 signature, decoding the token and reading its claims
 * is most of what mandant.authenticate() costs, and a client presents the
 * same access token on every request until it expires.  So a backend
 * remembers each token it verified completely (jwt.c: form, signature,
 * issuer, times) by the SHA-256 digest of its text, with the key (its
 * thumbprint, the "kid") that verified it, the issuer it was checked
 * against and its claims.  When the same token comes again, jwt.c takes
 * the claims from here as long as the key is still one of the current
 * verification keys (a key rotated out no longer vouches for its tokens),
 * the issuer setting is unchanged and the token has not expired; what the
 * database knows (the denylist, the user, the membership, the tenant's
 * status) is checked on every call as before (authenticate.c).  A digest
 * that matches is the same token, byte for byte.
 *
 * The entries and their claims live in one memory context under
 * TopMemoryContext; at most TOKEN_CACHE_SIZE tokens are kept, and when the
 * cache is full it is emptied.  The claims MandantCachedClaims returns are
 * the cache's own, valid until the next token is remembered: callers only
 * read them within one verification.
 *
 * Copyright (c) 2026, the mandant developers
 *
 * IDENTIFICATION
 *		extension/tokencache.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "common/sha2.h"
#include "nodes/pg_list.h"
#include "utils/hsearch.h"
#include "utils/memutils.h"

#include "mandant.h"

#define TOKEN_CACHE_SIZE	1024

typedef struct VerifiedToken
{
	uint8		digest[PG_SHA256_DIGEST_LENGTH];	/* the key */
	char		kid[MANDANT_JWT_KID_LEN + 1];
	char	   *issuer;
	MandantJwtClaims *claims;
} VerifiedToken;

static MemoryContext TokenContext = NULL;
static HTAB *verified = NULL;

/* TokenCache returns the table, created (again) in an empty context. */
static HTAB *
TokenCache(void)
{
	if (verified == NULL)
	{
		HASHCTL		ctl;

		if (TokenContext == NULL)
			TokenContext = AllocSetContextCreate(TopMemoryContext, "mandant verified tokens",
												 ALLOCSET_DEFAULT_SIZES);
		ctl.keysize = PG_SHA256_DIGEST_LENGTH;
		ctl.entrysize = sizeof(VerifiedToken);
		ctl.hcxt = TokenContext;
		verified = hash_create("mandant verified tokens", TOKEN_CACHE_SIZE, &ctl,
							   HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
	}
	return verified;
}

/* CopyString copies a claim that may be NULL into the cache's context. */
static const char *
CopyString(const char *s)
{
	return s ? MemoryContextStrdup(TokenContext, s) : NULL;
}

/*
 * MandantCachedClaims returns the claims of the token of digest if it was
 * verified against issuer by a key whose kid the caller accepts (the
 * current keys, see jwt.c), else NULL; *kid is set to that key's kid.
 */
MandantJwtClaims *
MandantCachedClaims(const uint8 *digest, const char *issuer, const char **kid)
{
	VerifiedToken *entry = hash_search(TokenCache(), digest, HASH_FIND, NULL);

	if (entry == NULL || strcmp(entry->issuer, issuer) != 0)
		return NULL;
	*kid = entry->kid;
	return entry->claims;
}

/*
 * MandantRememberClaims remembers the claims of the token of digest, which
 * key kid verified against issuer.
 */
void
MandantRememberClaims(const uint8 *digest, const char *kid, const char *issuer,
					  const MandantJwtClaims *claims)
{
	VerifiedToken *entry;
	MandantJwtClaims *copy;
	MemoryContext old;
	ListCell   *lc;
	bool		found;

	if (verified != NULL && hash_get_num_entries(verified) >= TOKEN_CACHE_SIZE)
	{
		MemoryContextReset(TokenContext);	/* the table too */
		verified = NULL;
	}
	entry = hash_search(TokenCache(), digest, HASH_ENTER, &found);
	if (found)
		return;
	old = MemoryContextSwitchTo(TokenContext);
	copy = palloc(sizeof(MandantJwtClaims));
	*copy = *claims;
	copy->payload = claims->payload ? pstrdup(claims->payload) : NULL;
	copy->sub = CopyString(claims->sub);
	copy->tid = CopyString(claims->tid);
	copy->tslug = CopyString(claims->tslug);
	copy->role = CopyString(claims->role);
	copy->jti = CopyString(claims->jti);
	copy->typ = CopyString(claims->typ);
	copy->sid = CopyString(claims->sid);
	copy->scope_names = NIL;
	foreach(lc, claims->scope_names)
		copy->scope_names = lappend(copy->scope_names, pstrdup(lfirst(lc)));
	MemoryContextSwitchTo(old);
	strlcpy(entry->kid, kid, sizeof(entry->kid));
	entry->issuer = MemoryContextStrdup(TokenContext, issuer);
	entry->claims = copy;
}
