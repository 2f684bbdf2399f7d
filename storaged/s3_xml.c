/*
 * s3_xml.c - the S3 XML answers read with expat (s3_xml.h). One walker
 * keeps the path of open elements and the text of the innermost one; each
 * reader is a callback on "element closed" that looks at the path.
 */
#include "s3_xml.h"

#include <errno.h>
#include <expat.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_DEPTH 8
#define TEXT_MAX 2048

struct walk {
    XML_Parser p;
    char names[MAX_DEPTH][64]; /* local names (namespace dropped) of the open elements */
    int depth;                 /* may exceed MAX_DEPTH: deeper names are not kept */
    char text[TEXT_MAX + 1];
    size_t tlen;
    bool text_overflow;
    /* depth is the element's (1 = root); name its local name; text its
     * character data when it has no child elements worth keeping. Nonzero
     * stops the parse with that code. */
    int (*on_end)(struct walk *w, int depth, const char *name, const char *text, void *cls);
    void *cls;
    int rc;
    bool doctype; /* a document type declaration was met: refused */
};

static const char *local_name(const char *name)
{
    const char *sep = strrchr(name, '|'); /* expat's namespace separator */
    return sep ? sep + 1 : name;
}

static void on_start(void *ud, const XML_Char *name, const XML_Char **attrs)
{
    (void)attrs;
    struct walk *w = ud;
    if (w->depth < MAX_DEPTH)
        snprintf(w->names[w->depth], sizeof(w->names[0]), "%s", local_name(name));
    w->depth++;
    w->tlen = 0;
    w->text_overflow = false;
}

static void on_text(void *ud, const XML_Char *s, int len)
{
    struct walk *w = ud;
    if (w->tlen + (size_t)len > TEXT_MAX) {
        w->text_overflow = true;
        return;
    }
    memcpy(w->text + w->tlen, s, (size_t)len);
    w->tlen += (size_t)len;
}

static void on_end(void *ud, const XML_Char *name)
{
    struct walk *w = ud;
    w->text[w->tlen] = '\0';
    int rc = w->on_end(w, w->depth, local_name(name), w->text_overflow ? NULL : w->text, w->cls);
    w->depth--;
    w->tlen = 0;
    w->text_overflow = false;
    if (rc && !w->rc) {
        w->rc = rc;
        XML_StopParser(w->p, XML_FALSE);
    }
}

/* S3 never sends a document type declaration; one could only declare
 * entities (expanded text, the "billion laughs") or point at external
 * ones, so the parse stops at its start, before anything is declared. */
static void on_doctype(void *ud, const XML_Char *name, const XML_Char *sysid, const XML_Char *pubid,
                       int has_internal_subset)
{
    (void)name;
    (void)sysid;
    (void)pubid;
    (void)has_internal_subset;
    struct walk *w = ud;
    w->doctype = true;
    XML_StopParser(w->p, XML_FALSE);
}

/* The root element's local name after parsing, through *root (when not NULL).
 * 0, the callback's code, or -EINVAL when the body is not well-formed XML. */
static int walk(const char *xml, size_t len,
                int (*fn)(struct walk *, int, const char *, const char *, void *), void *cls,
                char *root, size_t rootlen, char *err, size_t errlen)
{
    struct walk *w = calloc(1, sizeof(*w));
    if (!w) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    w->p = XML_ParserCreateNS(NULL, '|');
    if (!w->p) {
        free(w);
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    w->on_end = fn;
    w->cls = cls;
    XML_SetUserData(w->p, w);
    XML_SetElementHandler(w->p, on_start, on_end);
    XML_SetCharacterDataHandler(w->p, on_text);
    XML_SetStartDoctypeDeclHandler(w->p, on_doctype);
    int rc = 0;
    if (len > (size_t)INT32_MAX) {
        snprintf(err, errlen, "XML answer of %zu bytes is too large", len);
        rc = -EINVAL;
    } else {
        enum XML_Status ps = XML_Parse(w->p, xml, (int)len, XML_TRUE);
        if (w->doctype) {
            snprintf(err, errlen, "bad XML from the bucket: a DOCTYPE (S3 never sends one)");
            rc = -EINVAL;
        } else if (ps == XML_STATUS_ERROR && !w->rc) {
            snprintf(err, errlen, "bad XML from the bucket at line %lu: %s",
                     (unsigned long)XML_GetCurrentLineNumber(w->p),
                     XML_ErrorString(XML_GetErrorCode(w->p)));
            rc = -EINVAL;
        } else if (w->rc) {
            rc = w->rc;
        }
    }
    if (root && rootlen)
        snprintf(root, rootlen, "%s", w->names[0]);
    XML_ParserFree(w->p);
    free(w);
    return rc;
}

/* ---- ListObjectsV2 ---------------------------------------------------------- */

struct list_state {
    struct s3_list_page *page;
    struct s3_list_item cur;
    bool have_key, have_size, bad_truncated;
    char *err;
    size_t errlen;
};

static int list_end(struct walk *w, int depth, const char *name, const char *text, void *cls)
{
    struct list_state *st = cls;
    struct s3_list_page *pg = st->page;
    if (depth == 3 && strcmp(w->names[1], "Contents") == 0) {
        if (strcmp(name, "Key") == 0) {
            if (!text || strlen(text) > S3_XML_KEY_MAX) {
                snprintf(st->err, st->errlen, "ListObjectsV2: a <Key> longer than %d bytes",
                         S3_XML_KEY_MAX);
                return -EINVAL;
            }
            snprintf(st->cur.key, sizeof(st->cur.key), "%s", text);
            st->have_key = true;
        } else if (strcmp(name, "Size") == 0) {
            char *end;
            errno = 0;
            unsigned long long v = text ? strtoull(text, &end, 10) : 0;
            if (!text || !*text || *end || errno || text[0] == '-') {
                snprintf(st->err, st->errlen, "ListObjectsV2: <Size> \"%.40s\" is not a number",
                         text ? text : "(too long)");
                return -EINVAL;
            }
            st->cur.size = v;
            st->have_size = true;
        }
    } else if (depth == 2 && strcmp(name, "Contents") == 0) {
        if (!st->have_key || !st->have_size) {
            snprintf(st->err, st->errlen, "ListObjectsV2: a <Contents> without <Key> or <Size>");
            return -EINVAL;
        }
        if (pg->n == pg->cap) {
            size_t cap = pg->cap ? pg->cap * 2 : 64;
            struct s3_list_item *v = realloc(pg->items, cap * sizeof(*v));
            if (!v) {
                snprintf(st->err, st->errlen, "out of memory");
                return -ENOMEM;
            }
            pg->items = v;
            pg->cap = cap;
        }
        pg->items[pg->n++] = st->cur;
        memset(&st->cur, 0, sizeof(st->cur));
        st->have_key = st->have_size = false;
    } else if (depth == 2 && strcmp(name, "IsTruncated") == 0) {
        pg->truncated = text && strcmp(text, "true") == 0;
    } else if (depth == 2 && strcmp(name, "NextContinuationToken") == 0) {
        if (!text || strlen(text) > S3_XML_TOKEN_MAX) {
            snprintf(st->err, st->errlen, "ListObjectsV2: a continuation token over %d bytes",
                     S3_XML_TOKEN_MAX);
            return -EINVAL;
        }
        snprintf(pg->next_token, sizeof(pg->next_token), "%s", text);
    }
    return 0;
}

int s3_xml_list(const char *xml, size_t len, struct s3_list_page *page, char *err, size_t errlen)
{
    struct list_state st = {.page = page, .err = err, .errlen = errlen};
    char root[64] = "";
    int rc = walk(xml, len, list_end, &st, root, sizeof(root), err, errlen);
    if (rc == 0 && strcmp(root, "ListBucketResult") != 0) {
        snprintf(err, errlen, "expected a ListBucketResult from the bucket, got <%s>", root);
        rc = -EINVAL;
    }
    if (rc == 0 && page->truncated && !page->next_token[0]) {
        snprintf(err, errlen, "ListObjectsV2: IsTruncated without a NextContinuationToken");
        rc = -EINVAL;
    }
    return rc;
}

void s3_list_page_free(struct s3_list_page *page)
{
    free(page->items);
    memset(page, 0, sizeof(*page));
}

/* ---- <Error>, UploadId, CompleteMultipartUpload ------------------------------- */

struct fields {
    const char *want[2];
    char *out[2];
    size_t outlen[2];
    bool found[2];
};

static int fields_end(struct walk *w, int depth, const char *name, const char *text, void *cls)
{
    (void)w;
    struct fields *f = cls;
    if (depth != 2)
        return 0;
    for (int i = 0; i < 2; i++)
        if (f->want[i] && strcmp(name, f->want[i]) == 0) {
            snprintf(f->out[i], f->outlen[i], "%s", text ? text : "");
            f->found[i] = text && strlen(text) < f->outlen[i];
        }
    return 0;
}

int s3_xml_error(const char *xml, size_t len, char *code, size_t codelen, char *msg, size_t msglen)
{
    char root[64] = "", err[256];
    code[0] = msg[0] = '\0';
    struct fields f = {{"Code", "Message"}, {code, msg}, {codelen, msglen}, {false, false}};
    if (walk(xml, len, fields_end, &f, root, sizeof(root), err, sizeof(err)) < 0)
        return -EINVAL;
    return strcmp(root, "Error") == 0 ? 1 : 0;
}

int s3_xml_upload_id(const char *xml, size_t len, char *id, size_t idlen, char *err, size_t errlen)
{
    char root[64] = "", spare[8];
    id[0] = '\0';
    struct fields f = {{"UploadId", NULL}, {id, spare}, {idlen, sizeof(spare)}, {false, false}};
    int rc = walk(xml, len, fields_end, &f, root, sizeof(root), err, errlen);
    if (rc < 0)
        return rc;
    if (strcmp(root, "InitiateMultipartUploadResult") != 0 || !f.found[0] || !id[0]) {
        snprintf(err, errlen, "no usable <UploadId> in the bucket's answer (root <%s>)", root);
        id[0] = '\0';
        return -EINVAL;
    }
    return 0;
}

int s3_xml_complete(const char *xml, size_t len, char *err, size_t errlen)
{
    char code[128], msg[256];
    int rc = s3_xml_error(xml, len, code, sizeof(code), msg, sizeof(msg));
    if (rc == 1) {
        snprintf(err, errlen, "the bucket refused to complete the upload: %s: %s", code, msg);
        return -EIO;
    }
    char root[64] = "";
    struct fields f = {{NULL, NULL}, {NULL, NULL}, {0, 0}, {false, false}};
    if (rc < 0 || walk(xml, len, fields_end, &f, root, sizeof(root), err, errlen) < 0 ||
        strcmp(root, "CompleteMultipartUploadResult") != 0) {
        snprintf(err, errlen, "unexpected answer to CompleteMultipartUpload (root <%s>)", root);
        return -EINVAL;
    }
    return 0;
}
