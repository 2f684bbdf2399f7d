/*
 * tls.h - the HTTPS side of the server layer: reading certificates and keys
 * (whole or refused), and handing the current certificate to GnuTLS for
 * each handshake so that SIGHUP can replace it without dropping connections.
 *
 * libmicrohttpd does TLS with GnuTLS (MHD_USE_TLS). Instead of giving it the
 * certificate once (MHD_OPTION_HTTPS_MEM_CERT), http_server_start installs
 * cas_tls_cert_callback (MHD_OPTION_HTTPS_CERT_CALLBACK): every handshake
 * takes the credentials current at that moment. cas_tls_reload() reads the
 * files again and swaps them in; handshakes already done keep going with the
 * old ones, which are kept until the process ends (a few KiB per reload).
 * The callback has no user pointer, so the credentials are process-wide:
 * one TLS server per process (each daemon runs one).
 */
#ifndef CAS_TLS_H
#define CAS_TLS_H

#include <stdbool.h>
#include <stddef.h>

/* GnuTLS priority string of the server: TLS 1.2 and 1.3 only. */
#define CAS_TLS_PRIORITIES "NORMAL:-VERS-ALL:+VERS-TLS1.3:+VERS-TLS1.2"

/* Largest certificate, key or CA bundle file accepted, in bytes. */
#define CAS_PEM_MAX (1024 * 1024)

/*
 * Reads a PEM file (certificate chain, private key or CA bundle) whole into
 * a malloc'd NUL-terminated string (*out, length in *len when len is not
 * NULL). what names the file in messages ("--tls-key"). Refused, -errno and
 * a message naming the file: cannot open, not a regular file, empty, larger
 * than CAS_PEM_MAX, changed size while read, a NUL byte, no "-----BEGIN ".
 * With secret set (a private key), also refused (-EPERM) when the file is
 * readable or writable by group or others (mode & 077), as ssh does.
 */
int cas_pem_read(const char *path, const char *what, bool secret, char **out, size_t *len,
                 char *err, size_t errlen);

/*
 * Reads a PEM CA bundle (cas_pem_read) and checks that GnuTLS parses it as
 * one or more X.509 certificates (-EINVAL with a message naming the file
 * otherwise), so that a wrong file is refused where it is named rather than
 * at the first handshake. what names it in messages ("ca_file").
 */
int cas_pem_read_ca(const char *path, const char *what, char **out, size_t *len, char *err,
                    size_t errlen);

/*
 * Loads the server credentials from cert_path (PEM chain, leaf first) and
 * key_path (PEM private key, mode 0600 or stricter) and makes them current;
 * with require_client_cert, each handshake asks for a client certificate,
 * fails without one and verifies it against MHD's trust list
 * (MHD_OPTION_HTTPS_MEM_TRUST). Checks that the key matches the
 * certificate. 0, or -errno with a message; on error the current
 * credentials are unchanged (so a bad file on SIGHUP keeps the old ones).
 * A leaf certificate outside its validity period (expired, or not valid
 * yet, by this host's clock) is logged as an error and served at start,
 * where there is nothing older to keep; cas_tls_reload refuses it
 * (-EKEYEXPIRED). One that ends within CAS_TLS_EXPIRY_WARN_S is logged as
 * a warning.
 */
#define CAS_TLS_EXPIRY_WARN_S (7 * 24 * 3600)

/*
 * The validity period (RFC 5280 section 4.1.2.5) of the first certificate
 * in a PEM text of len bytes, by this host's clock; what and path name the
 * file in messages ("tls_client_cert", its path). 0 in force (*soon when
 * it ends within CAS_TLS_EXPIRY_WARN_S, with a message saying so);
 * -EKEYEXPIRED expired or not valid yet, -EINVAL unreadable, -ENOMEM; each
 * with a message.
 */
int cas_tls_cert_validity(const char *pem, size_t len, const char *what, const char *path,
                          bool *soon, char *err, size_t errlen);
int cas_tls_load(const char *cert_path, const char *key_path, bool require_client_cert, char *err,
                 size_t errlen);
/* Loads again the files given to the last successful cas_tls_load. */
int cas_tls_reload(char *err, size_t errlen);
/* True once cas_tls_load has succeeded: the server speaks HTTPS. */
bool cas_tls_enabled(void);

/* The GnuTLS retrieve function given to MHD_OPTION_HTTPS_CERT_CALLBACK
 * (type gnutls_certificate_retrieve_function2, declared void * here so
 * that users of this header need not include gnutls). */
void *cas_tls_cert_callback(void);

#endif
