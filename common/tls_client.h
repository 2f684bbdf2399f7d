/*
 * tls_client.h - the client side of TLS (GnuTLS) on a socket the caller
 * connected and keeps polling: the balancer's pooled HTTP/1.1 reads from
 * https:// backends (balancerd/upstream.c), so that they are raced and
 * hedged like http:// ones (SPEC "Partial failure").
 *
 * A struct cas_tls_client holds the credentials (the trust list, an
 * optional client certificate); it is reference counted, as each session
 * keeps the one it was made with (GnuTLS reads them during the handshake)
 * while a reload may make a new one. A struct cas_tls_session is one TLS
 * connection over a connected stream socket fd, which stays the caller's:
 * it is polled by the caller, and its SO_RCVTIMEO / SO_SNDTIMEO bound the
 * waiting calls. The peer's certificate chain is verified against the
 * trust list, and its name against the host the caller connected to
 * (RFC 6125: a DNS name, or an IP address in the subjectAltName); SNI
 * (RFC 6066 section 3) is sent for a DNS name only. TLS 1.2 and 1.3.
 */
#ifndef CAS_TLS_CLIENT_H
#define CAS_TLS_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

struct cas_tls_client;
struct cas_tls_session;

/*
 * New client credentials: ca (PEM, ca_len bytes) is the trust list, or
 * NULL for the system's (/etc/ssl/certs); cert and key (PEM) a client
 * certificate for mutual TLS, or NULL. One reference, dropped with
 * cas_tls_client_put. 0, or -EINVAL / -ENOMEM with a message.
 */
int cas_tls_client_new(const char *ca, size_t ca_len, const char *cert, size_t cert_len,
                       const char *key, size_t key_len, struct cas_tls_client **out, char *err,
                       size_t errlen);
/* Takes another reference to cl (returned). */
struct cas_tls_client *cas_tls_client_ref(struct cas_tls_client *cl);
/* Drops a reference; the last one frees cl. NULL: nothing. */
void cas_tls_client_put(struct cas_tls_client *cl);

/*
 * A client session over connected socket fd towards host (a DNS name or
 * an IP address literal, without brackets), holding a reference to cl.
 * Nothing is sent until cas_tls_handshake. 0, or -ENOMEM / -EINVAL with a
 * message.
 */
int cas_tls_session_new(struct cas_tls_client *cl, int fd, const char *host,
                        struct cas_tls_session **out, char *err, size_t errlen);
/* Frees s (no close_notify is sent; the fd stays open). NULL: nothing. */
void cas_tls_session_free(struct cas_tls_session *s);

/*
 * Runs the handshake as far as the socket allows without waiting: 1 done
 * (certificate and name verified), 0 it needs the socket to be ready for
 * cas_tls_session_events (then call again), -EPROTO (the peer's certificate
 * is refused, or the handshake failed) or -ECONNRESET (the peer closed)
 * with a message.
 */
int cas_tls_handshake(struct cas_tls_session *s, char *err, size_t errlen);
/* POLLIN or POLLOUT: what the handshake waits for. */
short cas_tls_session_events(const struct cas_tls_session *s);

/*
 * Reads up to max bytes of application data: > 0 bytes; 0 when the peer
 * closed the session cleanly (close_notify); -EAGAIN when nothing came
 * (without waiting when nowait, else within the socket's SO_RCVTIMEO);
 * -ECONNRESET when the connection ended without close_notify (a cut);
 * -EPROTO / -EIO for anything else.
 */
ssize_t cas_tls_recv(struct cas_tls_session *s, void *buf, size_t max, bool nowait);
/*
 * Sends all of buf (len bytes), waiting within the socket's SO_SNDTIMEO:
 * 0, -ETIMEDOUT, or -EIO. A session whose send failed is not usable.
 */
int cas_tls_send_all(struct cas_tls_session *s, const void *buf, size_t len);
/* Bytes already decrypted and buffered: readable without polling the fd. */
size_t cas_tls_pending(const struct cas_tls_session *s);

#endif
