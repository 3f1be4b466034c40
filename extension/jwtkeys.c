/*-------------------------------------------------------------------------
 *
 * jwtkeys.c
 *		The keys of access tokens: the key files, their reloading on
 *		rotation, thumbprints, and mandant.jwks().
 *
 * Tokens are signed with RSASSA-PKCS1-v1_5 SHA-256 (RS256) through
 * OpenSSL's libcrypto.  The signing key is read from the PEM file named by
 * mandant.jwt_private_key_file, the verification keys from
 * mandant.jwt_public_key_file (any number of PEM public keys, so that the
 * keys of a rotation verify side by side) plus the signing key's own
 * public half.  Both settings are superuser-only; no key lives in a table.
 * The private key file must pass the access rule of keyfile.c.  Every key
 * is known by its RFC 7638 thumbprint (SHA-256, crypto.c), which is the
 * "kid" of the tokens it signs and of its entry in mandant.jwks().
 *
 * Keys are loaded on first use and kept in backend-local statics (the
 * EVP_PKEYs are OpenSSL's, the paths of the stamps in TopMemoryContext).
 * They are loaded again whenever the setting or the file (device, inode,
 * size, mtime) changes, so rotating is: write the new files, reload the
 * configuration.  A changed setting counts at once; the files are looked
 * at (stat) at most once per KEY_FILE_CHECK_INTERVAL, since every
 * authenticate() asks for the keys and a stat of each file would be a
 * fifth of its cost.
 *
 * Copyright (c) 2026, the mandant developers
 *
 * IDENTIFICATION
 *		extension/jwtkeys.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <sys/stat.h>

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#include "common/sha2.h"
#include "datatype/timestamp.h"
#include "fmgr.h"
#include "lib/stringinfo.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/jsonb.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "mandant.h"

/* Verification keys beyond the signing key. */
#define JWT_MAX_KEYS		16
/* Bytes of a key file that are read (PEM keys are a few kB). */
#define JWT_KEY_FILE_MAX	(1024 * 1024)

PG_FUNCTION_INFO_V1(mandant_jwks);

/* Settings (superuser-only). */
static char *private_key_file = NULL;
static char *public_key_file = NULL;

/* What a key file was when it was loaded, to notice changes. */
typedef struct KeyFileStamp
{
	char	   *path;			/* in TopMemoryContext; NULL: not loaded */
	dev_t		dev;
	ino_t		ino;
	off_t		size;
	struct timespec mtime;
	TimestampTz checked_at;		/* when the file was last found unchanged */
} KeyFileStamp;

/* How long a key file found unchanged is not looked at again. */
#define KEY_FILE_CHECK_INTERVAL	USECS_PER_SEC

static KeyFileStamp signing_stamp;
static MandantJwtKey signing_key;
static KeyFileStamp public_stamp;
static MandantJwtKey public_keys[JWT_MAX_KEYS];
static int	npublic_keys = 0;

/*
 * MandantDefineTokenKeyVariables defines the settings that name the key
 * files.  Called from MandantDefineTokenVariables.
 */
void
MandantDefineTokenKeyVariables(void)
{
	DefineCustomStringVariable("mandant.jwt_private_key_file",
							   gettext_noop("PEM file with the RSA private key that signs access tokens."),
							   gettext_noop("Relative paths are relative to the data directory. The file must not be readable by others."),
							   &private_key_file, "",
							   PGC_SUSET, GUC_SUPERUSER_ONLY | GUC_NOT_IN_SAMPLE,
							   NULL, NULL, NULL);
	DefineCustomStringVariable("mandant.jwt_public_key_file",
							   gettext_noop("PEM file with the RSA public keys that verify access tokens, besides the signing key's."),
							   gettext_noop("List the previous key here while rotating, until its tokens have expired."),
							   &public_key_file, "",
							   PGC_SUSET, GUC_SUPERUSER_ONLY | GUC_NOT_IN_SAMPLE,
							   NULL, NULL, NULL);
}

/* BignumToBase64Url encodes an RSA parameter for a JWK. */
static char *
BignumToBase64Url(const BIGNUM *bn)
{
	int			len = BN_num_bytes(bn);
	unsigned char *buf = palloc(len > 0 ? len : 1);
	char	   *out;

	BN_bn2bin(bn, buf);
	out = MandantBase64UrlEncode(buf, len);
	pfree(buf);
	return out;
}

/*
 * RsaParameters returns the modulus and public exponent of an RSA key,
 * base64url encoded.
 */
static void
RsaParameters(EVP_PKEY *pkey, char **n, char **e)
{
	BIGNUM	   *bn_n = NULL;
	BIGNUM	   *bn_e = NULL;

	if (!EVP_PKEY_get_bn_param(pkey, OSSL_PKEY_PARAM_RSA_N, &bn_n) ||
		!EVP_PKEY_get_bn_param(pkey, OSSL_PKEY_PARAM_RSA_E, &bn_e))
		elog(ERROR, "could not read RSA key parameters: %s", MandantOpenSslError());
	*n = BignumToBase64Url(bn_n);
	*e = BignumToBase64Url(bn_e);
	BN_free(bn_n);
	BN_free(bn_e);
}

/* Thumbprint computes the RFC 7638 SHA-256 thumbprint of an RSA key. */
static void
Thumbprint(EVP_PKEY *pkey, char *kid)
{
	char	   *n;
	char	   *e;
	char	   *canonical;
	uint8		digest[PG_SHA256_DIGEST_LENGTH];

	RsaParameters(pkey, &n, &e);
	canonical = psprintf("{\"e\":\"%s\",\"kty\":\"RSA\",\"n\":\"%s\"}", e, n);
	MandantSha256(canonical, strlen(canonical), digest);
	strlcpy(kid, MandantBase64UrlEncode(digest, sizeof(digest)), MANDANT_JWT_KID_LEN + 1);
}

/* CheckRsaKey refuses keys that are not RSA of at least 2048 bits. */
static void
CheckRsaKey(EVP_PKEY *pkey, const char *path)
{
	if (EVP_PKEY_get_base_id(pkey) != EVP_PKEY_RSA || EVP_PKEY_get_bits(pkey) < 2048)
		ereport(ERROR,
				(errcode(ERRCODE_CONFIG_FILE_ERROR),
				 errmsg("key in \"%s\" is not an RSA key of at least 2048 bits", path),
				 errdetail("Access tokens are signed with RS256."),
				 errhint("Generate one with: openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:3072")));
}

/* StampMatches: the file is still the one the key was loaded from. */
static bool
StampMatches(const KeyFileStamp *stamp, const char *path, const struct stat *st)
{
	return stamp->path != NULL && strcmp(stamp->path, path) == 0 &&
		stamp->dev == st->st_dev && stamp->ino == st->st_ino &&
		stamp->size == st->st_size &&
		stamp->mtime.tv_sec == st->st_mtim.tv_sec &&
		stamp->mtime.tv_nsec == st->st_mtim.tv_nsec;
}

/*
 * StampIsFresh: the keys were loaded from path, whose file was found
 * unchanged less than KEY_FILE_CHECK_INTERVAL ago.
 */
static bool
StampIsFresh(const KeyFileStamp *stamp, const char *path)
{
	return stamp->path != NULL && strcmp(stamp->path, path) == 0 &&
		GetCurrentTimestamp() - stamp->checked_at < KEY_FILE_CHECK_INTERVAL;
}

/* SetStamp records what the file was when its keys were loaded. */
static void
SetStamp(KeyFileStamp *stamp, const char *path, const struct stat *st)
{
	if (stamp->path)
		pfree(stamp->path);
	stamp->path = MemoryContextStrdup(TopMemoryContext, path);
	stamp->dev = st->st_dev;
	stamp->ino = st->st_ino;
	stamp->size = st->st_size;
	stamp->mtime = st->st_mtim;
	stamp->checked_at = GetCurrentTimestamp();
}

/* ClearStamp forgets what was loaded from a file. */
static void
ClearStamp(KeyFileStamp *stamp)
{
	if (stamp->path)
		pfree(stamp->path);
	stamp->path = NULL;
}

/*
 * OpenKeyBio reads a key file into an OpenSSL memory BIO for the PEM
 * reader; *content and *len are the buffer behind it, which ForgetKeyBio
 * zeroes once the BIO is freed.
 */
static BIO *
OpenKeyBio(const char *path, const char *setting, const struct stat *st,
		   char **content, size_t *len)
{
	BIO		   *bio;

	*content = MandantReadKeyFile(path, setting, "token key file", st, JWT_KEY_FILE_MAX, len);
	bio = BIO_new_mem_buf(*content, (int) *len);
	if (bio == NULL)
		elog(ERROR, "could not create an OpenSSL buffer: %s", MandantOpenSslError());
	return bio;
}

/* ForgetKeyBio frees a BIO of OpenKeyBio and zeroes the key bytes. */
static void
ForgetKeyBio(BIO *bio, char *content, size_t len)
{
	BIO_free(bio);
	explicit_bzero(content, len);
	pfree(content);
}

/*
 * MandantJwtSigningKey returns the signing key, (re)loading it when the
 * setting or the file changed.  The file must pass MandantCheckKeyFileMode.
 */
MandantJwtKey *
MandantJwtSigningKey(void)
{
	struct stat st;
	BIO		   *bio;
	char	   *content;
	size_t		len;
	EVP_PKEY   *pkey;
	char		kid[MANDANT_JWT_KID_LEN + 1];

	if (private_key_file == NULL || private_key_file[0] == '\0')
		ereport(ERROR,
				(errcode(ERRCODE_CONFIG_FILE_ERROR),
				 errmsg("no token signing key is configured"),
				 errdetail("mandant.jwt_private_key_file is not set."),
				 errhint("Set mandant.jwt_private_key_file to a PEM RSA private key (superuser) and reload; `make run` generates a development key.")));
	if (StampIsFresh(&signing_stamp, private_key_file))
		return &signing_key;
	MandantStatKeyFile(private_key_file, "mandant.jwt_private_key_file", "token key file", &st);
	if (StampMatches(&signing_stamp, private_key_file, &st))
	{
		signing_stamp.checked_at = GetCurrentTimestamp();
		return &signing_key;
	}
	MandantCheckKeyFileMode(private_key_file, &st, "token signing key file");

	bio = OpenKeyBio(private_key_file, "mandant.jwt_private_key_file", &st, &content, &len);
	pkey = PEM_read_bio_PrivateKey(bio, NULL, NULL, NULL);
	ForgetKeyBio(bio, content, len);
	if (pkey == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_CONFIG_FILE_ERROR),
				 errmsg("could not load the token signing key from \"%s\"", private_key_file),
				 errdetail("%s", MandantOpenSslError()),
				 errhint("The file must hold an unencrypted PEM private key.")));
	PG_TRY();
	{
		CheckRsaKey(pkey, private_key_file);
		Thumbprint(pkey, kid);
	}
	PG_CATCH();
	{
		EVP_PKEY_free(pkey);
		PG_RE_THROW();
	}
	PG_END_TRY();
	if (signing_key.pkey)
		EVP_PKEY_free(signing_key.pkey);
	signing_key.pkey = pkey;
	memcpy(signing_key.kid, kid, sizeof(kid));
	SetStamp(&signing_stamp, private_key_file, &st);
	return &signing_key;
}

/* FreePublicKeys drops the keys of mandant.jwt_public_key_file. */
static void
FreePublicKeys(void)
{
	for (int i = 0; i < npublic_keys; i++)
		EVP_PKEY_free(public_keys[i].pkey);
	npublic_keys = 0;
}

/*
 * ReadPublicKeys reads every PEM public key of a BIO into public_keys,
 * with its thumbprint; raises when there are too many or one is not a
 * usable RSA key.
 */
static void
ReadPublicKeys(BIO *bio)
{
	EVP_PKEY   *pkey;

	while ((pkey = PEM_read_bio_PUBKEY(bio, NULL, NULL, NULL)) != NULL)
	{
		if (npublic_keys == JWT_MAX_KEYS)
		{
			EVP_PKEY_free(pkey);
			ereport(ERROR,
					(errcode(ERRCODE_CONFIG_FILE_ERROR),
					 errmsg("too many keys in \"%s\"", public_key_file),
					 errdetail("At most %d public keys are read.", JWT_MAX_KEYS),
					 errhint("Remove the keys whose tokens have expired.")));
		}
		public_keys[npublic_keys++].pkey = pkey;
		CheckRsaKey(pkey, public_key_file);
		Thumbprint(pkey, public_keys[npublic_keys - 1].kid);
	}
	ERR_clear_error();			/* the end of the file reads as an error */
}

/*
 * LoadPublicKeys (re)loads the keys of mandant.jwt_public_key_file when the
 * setting or the file changed.
 */
static void
LoadPublicKeys(void)
{
	struct stat st;
	BIO		   *bio;
	char	   *content;
	size_t		len;

	if (public_key_file == NULL || public_key_file[0] == '\0')
	{
		FreePublicKeys();
		ClearStamp(&public_stamp);
		return;
	}
	if (StampIsFresh(&public_stamp, public_key_file))
		return;
	MandantStatKeyFile(public_key_file, "mandant.jwt_public_key_file", "token key file", &st);
	if (StampMatches(&public_stamp, public_key_file, &st))
	{
		public_stamp.checked_at = GetCurrentTimestamp();
		return;
	}

	FreePublicKeys();
	ClearStamp(&public_stamp);
	bio = OpenKeyBio(public_key_file, "mandant.jwt_public_key_file", &st, &content, &len);
	PG_TRY();
	{
		ReadPublicKeys(bio);
	}
	PG_CATCH();
	{
		ForgetKeyBio(bio, content, len);
		FreePublicKeys();
		PG_RE_THROW();
	}
	PG_END_TRY();
	ForgetKeyBio(bio, content, len);
	if (npublic_keys == 0)
		ereport(ERROR,
				(errcode(ERRCODE_CONFIG_FILE_ERROR),
				 errmsg("no public key found in \"%s\"", public_key_file),
				 errdetail("The file is named by mandant.jwt_public_key_file."),
				 errhint("Concatenate the PEM public keys (BEGIN PUBLIC KEY) of the keys that may verify tokens.")));
	SetStamp(&public_stamp, public_key_file, &st);
}

/*
 * MandantJwtVerificationKeys returns the keys that verify tokens: the
 * signing key's public half (if a signing key is configured) and the
 * public keys, each once.  *n is set to their number.
 */
MandantJwtKey **
MandantJwtVerificationKeys(int *n)
{
	MandantJwtKey **keys = palloc((JWT_MAX_KEYS + 1) * sizeof(MandantJwtKey *));

	*n = 0;
	if (private_key_file != NULL && private_key_file[0] != '\0')
		keys[(*n)++] = MandantJwtSigningKey();
	LoadPublicKeys();
	for (int i = 0; i < npublic_keys; i++)
	{
		if (*n > 0 && strcmp(keys[0]->kid, public_keys[i].kid) == 0)
			continue;
		keys[(*n)++] = &public_keys[i];
	}
	if (*n == 0)
		ereport(ERROR,
				(errcode(ERRCODE_CONFIG_FILE_ERROR),
				 errmsg("no token keys are configured"),
				 errdetail("Neither mandant.jwt_private_key_file nor mandant.jwt_public_key_file is set."),
				 errhint("Set them (superuser) and reload; `make run` generates a development key pair.")));
	return keys;
}

/*
 * mandant.jwks() returns jsonb: the verification keys as a JSON Web Key
 * Set, for clients that verify tokens themselves.
 */
Datum
mandant_jwks(PG_FUNCTION_ARGS)
{
	int			nkeys;
	MandantJwtKey **keys = MandantJwtVerificationKeys(&nkeys);
	StringInfoData json;

	initStringInfo(&json);
	appendStringInfoString(&json, "{\"keys\": [");
	for (int i = 0; i < nkeys; i++)
	{
		char	   *n;
		char	   *e;

		RsaParameters(keys[i]->pkey, &n, &e);
		appendStringInfo(&json,
						 "%s{\"kty\": \"RSA\", \"use\": \"sig\", \"alg\": \"RS256\", \"kid\": \"%s\", \"n\": \"%s\", \"e\": \"%s\"}",
						 i > 0 ? ", " : "", keys[i]->kid, n, e);
	}
	appendStringInfoString(&json, "]}");
	PG_RETURN_DATUM(DirectFunctionCall1(jsonb_in, CStringGetDatum(json.data)));
}
