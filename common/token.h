/*
 * token.h - reading the shared bearer token from a file.
 */
#ifndef CAS_TOKEN_H
#define CAS_TOKEN_H

#include <stddef.h>

/* Reads the first line of path (trailing whitespace dropped) into a malloc'd
 * string. An unreadable or empty file is an error with a message. */
int cas_token_read(const char *path, char **out, char *err, size_t errlen);

#endif
