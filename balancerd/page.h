/*
 * page.h - the HTML page at GET / (front layer).
 */
#ifndef CAS_BAL_PAGE_H
#define CAS_BAL_PAGE_H

#include "httpd.h"

void page_index(struct http_req *req);

#endif
