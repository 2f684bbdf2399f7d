/*
 * s3_xml.h - reading the XML answers of an S3-compatible server with expat:
 * ListObjectsV2 pages, <Error> bodies, InitiateMultipartUpload's UploadId
 * and CompleteMultipartUpload's result (which can be an <Error> under a 200
 * status). Pure functions over a complete body in memory: the callers bound
 * the body's size. No hand-written XML parsing.
 */
#ifndef CAS_S3_XML_H
#define CAS_S3_XML_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define S3_XML_TOKEN_MAX 1024 /* continuation tokens, upload ids: longer is refused */
#define S3_XML_KEY_MAX 1024   /* S3 object keys are at most 1024 bytes */

struct s3_list_item {
    char key[S3_XML_KEY_MAX + 1];
    uint64_t size; /* bytes */
};

struct s3_list_page {
    struct s3_list_item *items; /* malloc'd; s3_list_page_free */
    size_t n, cap;
    bool truncated;                        /* <IsTruncated>true */
    char next_token[S3_XML_TOKEN_MAX + 1]; /* <NextContinuationToken>, "" when none */
};

/* Parses a ListBucketResult (ListObjectsV2) into page (zeroed by the
 * caller). 0, or -EINVAL / -ENOMEM with a message: not XML, not a
 * ListBucketResult, a <Size> that is not a number, a key or token too long,
 * IsTruncated true without a NextContinuationToken. */
int s3_xml_list(const char *xml, size_t len, struct s3_list_page *page, char *err, size_t errlen);
void s3_list_page_free(struct s3_list_page *page);

/* When xml is an <Error> document: 1, with its <Code> and <Message>
 * (truncated to the buffers). 0 when it is well-formed XML of another root
 * element; -EINVAL when it is not XML at all. */
int s3_xml_error(const char *xml, size_t len, char *code, size_t codelen, char *msg, size_t msglen);

/* The <UploadId> of an InitiateMultipartUploadResult. 0, or -EINVAL with a
 * message (no such element, empty, longer than idlen - 1). */
int s3_xml_upload_id(const char *xml, size_t len, char *id, size_t idlen, char *err, size_t errlen);

/* A CompleteMultipartUpload answer (status 200): 0 for a
 * CompleteMultipartUploadResult, -EIO with the server's code and message
 * for an <Error> (S3 reports a failed completion that way), -EINVAL for
 * anything else. */
int s3_xml_complete(const char *xml, size_t len, char *err, size_t errlen);

#endif
