/*
 * proxy.h - the object routes: PUT, POST (and Cask's multipart form), GET,
 * HEAD, DELETE (handler layer, above repair).
 */
#ifndef CAS_BAL_PROXY_H
#define CAS_BAL_PROXY_H

#include "httpd.h"

void proxy_get(struct http_req *req);
void proxy_put(struct http_req *req);
void proxy_post(struct http_req *req);
void proxy_post_cask(struct http_req *req);
void proxy_delete(struct http_req *req);
/* GET/HEAD/PUT/DELETE of /objects/ or /file/ with a slash in the key (after
 * URL decoding): 400 naming the refused key, as a storaged answers. */
void proxy_bad_key(struct http_req *req);

#endif
