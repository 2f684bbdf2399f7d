/*
 * token.h - reading the shared bearer token (or any small secret) from a
 * file, whole or not at all.
 *
 * The one reader used by storaged (--token-file), balancerd (token_file) and
 * the ca-cas tool (--token-file, the rebalance config). A secret that was
 * silently cut (a long line, an embedded NUL) or padded would make two
 * programs disagree on the token, or weaken it; so anything doubtful is
 * refused with a message naming the file and the reason, and nothing is
 * trimmed but a single trailing newline ("\n" or "\r\n").
 */
#ifndef CAS_TOKEN_H
#define CAS_TOKEN_H

#include <stddef.h>

/* Largest token accepted, in bytes, the trailing newline excluded. */
#define CAS_TOKEN_MAX 4096

/*
 * Reads the secret in path into a malloc'd NUL-terminated string (*out).
 * Refused, with -errno and a message in err: a file that cannot be opened,
 * that is not a regular file (directory, FIFO, device: a FIFO is never
 * opened for reading, so a missing writer cannot hang start-up), that is
 * empty (or only a newline), larger than CAS_TOKEN_MAX (+ newline), that
 * changes size while read, or that holds a NUL, a CR or LF anywhere but the
 * single trailing newline, or any other control character.
 */
int cas_token_read(const char *path, char **out, char *err, size_t errlen);

#endif
