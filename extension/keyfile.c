/*-------------------------------------------------------------------------
 *
 * keyfile.c
 *		Reading the files that hold mandant's keys: the token signing and
 *		verification keys (jwtkeys.c) and the TOTP sealing key (totp.c).
 *
 * Keys live in files named by superuser-only settings, never in tables.
 * A file that holds a private or secret key must not be accessible to
 * others, nor to the group unless it belongs to root: the rule PostgreSQL
 * applies to ssl_key_file.  The rule and the messages of a missing or
 * unreadable file are written here once; callers name the setting and
 * say what the file is ("token key file", "secret key file") for the
 * messages.
 *
 * The file is stat()ed first, so that a caller can keep what it loaded
 * while the file is unchanged (jwtkeys.c compares the stat), and read
 * through AllocateFile, so that an error in between closes it.  The
 * caller zeroes the bytes it was given once it has used them.
 *
 * Copyright (c) 2026, the mandant developers
 *
 * IDENTIFICATION
 *		extension/keyfile.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <sys/stat.h>

#include "storage/fd.h"

#include "mandant.h"

static void KeyFileUnreadable(const char *path, const char *setting, const char *what,
							  bool opening) pg_attribute_noreturn();

/*
 * KeyFileUnreadable raises the error of a key file that cannot be opened
 * or read, with errno's reason.
 */
static void
KeyFileUnreadable(const char *path, const char *setting, const char *what, bool opening)
{
	ereport(ERROR,
			(errcode(ERRCODE_CONFIG_FILE_ERROR),
			 opening ? errmsg("could not open %s \"%s\": %m", what, path) :
			 errmsg("could not read %s \"%s\": %m", what, path),
			 errdetail("The file is named by %s.", setting),
			 errhint("Point %s at a readable file and reload the configuration.", setting)));
}

/*
 * MandantStatKeyFile stats the key file named by setting; raises when it
 * cannot.
 */
void
MandantStatKeyFile(const char *path, const char *setting, const char *what,
				   struct stat *st)
{
	if (stat(path, st) != 0)
		KeyFileUnreadable(path, setting, what, false);
}

/*
 * MandantCheckKeyFileMode refuses a file holding a private or secret key
 * that others (or the group, unless root owns it) may access.
 */
void
MandantCheckKeyFileMode(const char *path, const struct stat *st, const char *what)
{
	if ((st->st_mode & S_IRWXO) != 0 || ((st->st_mode & S_IRWXG) != 0 && st->st_uid != 0))
		ereport(ERROR,
				(errcode(ERRCODE_CONFIG_FILE_ERROR),
				 errmsg("%s \"%s\" has group or world access", what, path),
				 errdetail("Its mode is %04o.", (unsigned int) (st->st_mode & 07777)),
				 errhint("chmod 600 the file (or 640 when it belongs to root).")));
}

/*
 * MandantReadKeyFile returns the first max bytes of a key file (at most
 * the size st gave), NUL-terminated, and their number in *len.
 */
char *
MandantReadKeyFile(const char *path, const char *setting, const char *what,
				   const struct stat *st, size_t max, size_t *len)
{
	size_t		want = Min((size_t) st->st_size, max);
	char	   *content = palloc(want + 1);
	FILE	   *file = AllocateFile(path, "r");

	if (file == NULL)
		KeyFileUnreadable(path, setting, what, true);
	*len = fread(content, 1, want, file);
	if (ferror(file))
	{
		explicit_bzero(content, want);
		KeyFileUnreadable(path, setting, what, false);
	}
	FreeFile(file);
	content[*len] = '\0';
	return content;
}
