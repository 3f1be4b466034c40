/*
 * Copyright (c) 2026, the mandant developers
 *
 * Permission to use, copy, modify, and distribute this software for any
 * purpose with or without fee is hereby granted, provided that the above
 * copyright notice and this permission notice appear in all copies.
 *
 * THE SOFTWARE IS PROVIDED "AS IS" AND THE AUTHOR DISCLAIMS ALL WARRANTIES
 * WITH REGARD TO THIS SOFTWARE INCLUDING ALL IMPLIED WARRANTIES OF
 * MERCHANTABILITY AND FITNESS. IN NO EVENT SHALL THE AUTHOR BE LIABLE FOR
 * ANY SPECIAL, DIRECT, INDIRECT, OR CONSEQUENTIAL DAMAGES OR ANY DAMAGES
 * WHATSOEVER RESULTING FROM LOSS OF USE, DATA OR PROFITS, WHETHER IN AN
 * ACTION OF CONTRACT, NEGLIGENCE OR OTHER TORTIOUS ACTION, ARISING OUT OF
 * OR IN CONNECTION WITH THE USE OR PERFORMANCE OF THIS SOFTWARE.
 */

/*
 * shim/src/tls.c: the private key of the TLS certificate, in the workers.
 *
 * Kore 4.1 keeps private keys out of its workers: a worker's SSL_CTX gets
 * the certificate's public key with an RSA_METHOD or EC_KEY_METHOD whose
 * sign hooks ask the key manager process over IPC (src/domain.c,
 * kore_domain_tlsinit; src/keymgr.c).  Built against OpenSSL 3, as
 * Debian's kore is, the hooks never run: X509_get_pubkey returns a
 * provider key, EVP_PKEY_get1_RSA / EVP_PKEY_get1_EC_KEY return a cached
 * legacy copy of it, and the method is set on that copy only.  The
 * handshake then signs with a key that has no private half, which fails,
 * and the client gets an "internal error" alert (curl exit 35), for RSA
 * and ECDSA keys, TLS 1.2 and 1.3 alike.  (The key manager's side,
 * EVP_PKEY_get0 on a provider key, would return NULL as well.)  No
 * setting of Kore avoids this path.
 *
 * So the shim gives the workers the key itself: the parent reads
 * MANDANT_TLS_KEY before it forks, and every SSL_CTX that Kore creates
 * afterwards gets a certificate callback (installed from an SSL_CTX
 * ex_data constructor, the one hook OpenSSL offers at SSL_CTX_new) that
 * puts the key into each connection before the server signs.  The key
 * thus lives in every worker's memory, as in most servers, instead of the
 * key manager's only; shim/README.md says so.
 */

#include <sys/types.h>

#include <stdio.h>
#include <stdlib.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>

#include "shim.h"

static void	shim_tls_ctx_new(void *, void *, CRYPTO_EX_DATA *, int, long,
		    void *);
static int	shim_tls_cert(SSL *, void *);

static EVP_PKEY	*shim_tls_key = NULL;

/*
 * shim_tls_cert puts the private key into the connection SSL before its
 * certificate is used (after SNI chose the context).
 */
static int
shim_tls_cert(SSL *ssl, void *arg)
{
	(void)arg;

	if (shim_tls_key == NULL)
		return (1);
	if (SSL_use_PrivateKey(ssl, shim_tls_key) != 1 ||
	    SSL_check_private_key(ssl) != 1) {
		kore_log(LOG_WARNING, "tls: the private key does not fit "
		    "the certificate: %s", ERR_error_string(ERR_get_error(),
		    NULL));
		return (0);
	}

	return (1);
}

/*
 * shim_tls_ctx_new runs for every new SSL_CTX and installs the
 * certificate callback on it.
 */
static void
shim_tls_ctx_new(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx,
    long argl, void *argp)
{
	(void)ptr;
	(void)ad;
	(void)idx;
	(void)argl;
	(void)argp;

	SSL_CTX_set_cert_cb(parent, shim_tls_cert, NULL);
}

/*
 * shim_tls_init reads the private key of MANDANT_TLS_KEY (in the parent,
 * before the workers fork), checks that it is the key of the first
 * certificate of MANDANT_TLS_CERT, and registers the SSL_CTX constructor;
 * without TLS it does nothing.  It returns 0 when the key cannot be read
 * or does not fit.
 */
int
shim_tls_init(void)
{
	const char	*path, *certpath;
	FILE		*fp;
	X509		*cert;
	int		 fits;

	if ((path = getenv("MANDANT_TLS_KEY")) == NULL || *path == '\0')
		return (1);

	if ((fp = fopen(path, "r")) == NULL) {
		kore_log(LOG_ERR, "tls: cannot open %s", path);
		goto fail;
	}
	shim_tls_key = PEM_read_PrivateKey(fp, NULL, NULL, NULL);
	(void)fclose(fp);
	if (shim_tls_key == NULL) {
		kore_log(LOG_ERR, "tls: %s holds no private key: %s", path,
		    ERR_error_string(ERR_get_error(), NULL));
		goto fail;
	}

	/* Kore's key manager loads the key without this check. */
	if ((certpath = getenv("MANDANT_TLS_CERT")) == NULL ||
	    (fp = fopen(certpath, "r")) == NULL) {
		kore_log(LOG_ERR, "tls: cannot open the certificate %s",
		    certpath ? certpath : "(MANDANT_TLS_CERT unset)");
		goto fail;
	}
	cert = PEM_read_X509(fp, NULL, NULL, NULL);
	(void)fclose(fp);
	fits = cert != NULL && X509_check_private_key(cert, shim_tls_key);
	X509_free(cert);
	if (!fits) {
		kore_log(LOG_ERR, "tls: %s is not the key of the certificate "
		    "%s", path, certpath);
		goto fail;
	}

	if (SSL_CTX_get_ex_new_index(0, NULL, shim_tls_ctx_new, NULL,
	    NULL) < 0) {
		kore_log(LOG_ERR, "tls: cannot register the SSL_CTX hook");
		goto fail;
	}

	return (1);

fail:
	EVP_PKEY_free(shim_tls_key);
	shim_tls_key = NULL;
	return (0);
}
