/*-------------------------------------------------------------------------
 *
 * tokencache.c
 *		The access tokens whose signature this backend has verified.
 *
 * Checking an RS256 signature is most of what mandant.authenticate()
 * costs, and a client presents the same access token on every request
 * until it expires.  So a backend remembers the SHA-256 digest of each
 * token whose signature it verified, with the key (its thumbprint, the
 * "kid") that verified it and the token's expiry, and skips the signature
 * check when the same token comes again, is still unexpired and its header
 * still names that key among the current verification keys (a key that
 * was rotated out no longer vouches for its tokens).  Everything else is
 * checked on every call as before: the header, the claims and their
 * times, and what the database knows (the denylist, the user, the
 * membership, the tenant's status).  Only a token that passed all of
 * jwt.c's checks is remembered; a digest that matches is the same token,
 * byte for byte.
 *
 * The cache is backend-local, in its own memory context, and holds at most
 * TOKEN_CACHE_SIZE tokens; when it is full, it is emptied.
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
#include "utils/hsearch.h"
#include "utils/memutils.h"

#include "mandant.h"

#define TOKEN_CACHE_SIZE	1024

typedef struct VerifiedToken
{
	uint8		digest[PG_SHA256_DIGEST_LENGTH];	/* the key */
	char		kid[MANDANT_JWT_KID_LEN + 1];
	double		exp;
} VerifiedToken;

static HTAB *verified = NULL;

/* TokenCache returns the table, created on first use. */
static HTAB *
TokenCache(void)
{
	if (verified == NULL)
	{
		HASHCTL		ctl;

		ctl.keysize = PG_SHA256_DIGEST_LENGTH;
		ctl.entrysize = sizeof(VerifiedToken);
		ctl.hcxt = TopMemoryContext;
		verified = hash_create("mandant verified tokens", TOKEN_CACHE_SIZE, &ctl,
							   HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
	}
	return verified;
}

/*
 * MandantTokenVerified says whether the token of digest was verified by
 * key kid and is not past exp (now in Unix seconds).
 */
bool
MandantTokenVerified(const uint8 *digest, const char *kid, double now)
{
	VerifiedToken *entry = hash_search(TokenCache(), digest, HASH_FIND, NULL);

	return entry != NULL && strcmp(entry->kid, kid) == 0 && now <= entry->exp;
}

/*
 * MandantRememberVerified remembers that key kid verified the token of
 * digest, which expires at exp.
 */
void
MandantRememberVerified(const uint8 *digest, const char *kid, double exp)
{
	VerifiedToken *entry;
	bool		found;

	if (hash_get_num_entries(TokenCache()) >= TOKEN_CACHE_SIZE)
	{
		hash_destroy(verified);
		verified = NULL;
	}
	entry = hash_search(TokenCache(), digest, HASH_ENTER, &found);
	strlcpy(entry->kid, kid, sizeof(entry->kid));
	entry->exp = exp;
}
