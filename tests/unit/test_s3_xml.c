/*
 * test_s3_xml.c - CUnit suite for storaged/s3_xml.c (S3's XML answers read
 * with expat), storaged/s3_client.c's pure helpers (query escaping, which
 * statuses are retried) and the backend registry in storaged/store.c.
 */
#include "s3_client.h"
#include "s3_xml.h"
#include "store.h"

#include <CUnit/Basic.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define S(x) x, strlen(x)

static const char list_page[] =
    "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
    "<ListBucketResult xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">"
    "<Name>cas</Name><Prefix>objects/</Prefix><KeyCount>2</KeyCount>"
    "<MaxKeys>1000</MaxKeys><IsTruncated>true</IsTruncated>"
    "<Contents><Key>objects/2aae6c35c94fcfb415dbe95f408b9ce91ee846ed</Key>"
    "<LastModified>2026-11-29T15:00:00.000Z</LastModified><ETag>&quot;x&quot;</ETag>"
    "<Size>11</Size><StorageClass>STANDARD</StorageClass></Contents>"
    "<Contents><Key>objects/a&amp;b</Key><Size>18446744073709551615</Size></Contents>"
    "<NextContinuationToken>1ueGcxLPRx1Tr/XYExHnhbYLgveDs2J/wm36Hy4vbOwM=</NextContinuationToken>"
    "</ListBucketResult>";

static void test_list(void)
{
    struct s3_list_page pg = {0};
    char err[256] = "";
    CU_ASSERT_EQUAL_FATAL(s3_xml_list(S(list_page), &pg, err, sizeof(err)), 0);
    CU_ASSERT_EQUAL_FATAL(pg.n, 2);
    CU_ASSERT_STRING_EQUAL(pg.items[0].key, "objects/2aae6c35c94fcfb415dbe95f408b9ce91ee846ed");
    CU_ASSERT_EQUAL(pg.items[0].size, 11);
    CU_ASSERT_STRING_EQUAL(pg.items[1].key, "objects/a&b"); /* entities decoded */
    CU_ASSERT_EQUAL(pg.items[1].size, UINT64_MAX);          /* 64-bit sizes */
    CU_ASSERT(pg.truncated);
    CU_ASSERT_STRING_EQUAL(pg.next_token, "1ueGcxLPRx1Tr/XYExHnhbYLgveDs2J/wm36Hy4vbOwM=");
    s3_list_page_free(&pg);

    /* The last page: no token, not truncated; an empty bucket. */
    const char *last = "<ListBucketResult><IsTruncated>false</IsTruncated></ListBucketResult>";
    CU_ASSERT_EQUAL(s3_xml_list(S(last), &pg, err, sizeof(err)), 0);
    CU_ASSERT_EQUAL(pg.n, 0);
    CU_ASSERT(!pg.truncated);
    s3_list_page_free(&pg);
}

static void test_list_refuses(void)
{
    const char *bad[] = {
        "not xml at all",
        "<ListBucketResult><Contents><Key>k</Key><Size>-1</Size></Contents></ListBucketResult>",
        "<ListBucketResult><Contents><Key>k</Key><Size>12x</Size></Contents></ListBucketResult>",
        "<ListBucketResult><Contents><Key>k</Key><Size>99999999999999999999</Size></Contents>"
        "</ListBucketResult>",
        "<ListBucketResult><Contents><Key>k</Key></Contents></ListBucketResult>",
        "<ListBucketResult><IsTruncated>true</IsTruncated></ListBucketResult>",
        "<Error><Code>AccessDenied</Code></Error>",
        "<ListBucketResult><Contents><Key>k</Key><Size>1</Size></Contents>", /* cut short */
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct s3_list_page pg = {0};
        char err[256] = "";
        int rc = s3_xml_list(S(bad[i]), &pg, err, sizeof(err));
        CU_ASSERT(rc < 0);
        CU_ASSERT(err[0] != '\0');
        if (rc == 0)
            printf("\n  accepted: %s\n", bad[i]);
        s3_list_page_free(&pg);
    }
    /* A key longer than S3 allows is refused, not cut. */
    char *big = malloc(S3_XML_KEY_MAX + 200);
    CU_ASSERT_PTR_NOT_NULL_FATAL(big);
    int n = snprintf(big, 100, "<ListBucketResult><Contents><Key>");
    memset(big + n, 'k', S3_XML_KEY_MAX + 1);
    n += S3_XML_KEY_MAX + 1;
    snprintf(big + n, 100, "</Key><Size>1</Size></Contents></ListBucketResult>");
    struct s3_list_page pg = {0};
    char err[256];
    CU_ASSERT_EQUAL(s3_xml_list(big, strlen(big), &pg, err, sizeof(err)), -EINVAL);
    s3_list_page_free(&pg);
    free(big);
}

/* S3 never sends a document type declaration: one (with entities, the
 * "billion laughs" of nested ones, or an external entity) is refused
 * before anything is expanded, by every reader. */
static void test_doctype_refused(void)
{
    const char *laughs =
        "<?xml version=\"1.0\"?><!DOCTYPE r [<!ENTITY a \"aaaaaaaaaa\">"
        "<!ENTITY b \"&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;\"><!ENTITY c "
        "\"&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;\">"
        "<!ENTITY d \"&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;\">]>"
        "<ListBucketResult><Contents><Key>&d;</Key><Size>1</Size></Contents></ListBucketResult>";
    const char *inner =
        "<!DOCTYPE r [<!ENTITY k \"objects/2aae6c35c94fcfb415dbe95f408b9ce91ee846ed\">]>"
        "<ListBucketResult><Contents><Key>&k;</Key><Size>1</Size></Contents>"
        "<IsTruncated>false</IsTruncated></ListBucketResult>";
    const char *external = "<!DOCTYPE r SYSTEM \"file:///etc/passwd\"><ListBucketResult>"
                           "<IsTruncated>false</IsTruncated></ListBucketResult>";
    const char *docs[] = {laughs, inner, external};
    for (size_t i = 0; i < sizeof(docs) / sizeof(docs[0]); i++) {
        struct s3_list_page pg = {0};
        char err[256] = "";
        CU_ASSERT_EQUAL(s3_xml_list(S(docs[i]), &pg, err, sizeof(err)), -EINVAL);
        CU_ASSERT_PTR_NOT_NULL(strstr(err, "DOCTYPE"));
        CU_ASSERT_EQUAL(pg.n, 0);
        s3_list_page_free(&pg);
    }
    char code[64], msg[64], id[64], err[256];
    const char *e = "<!DOCTYPE r [<!ENTITY m \"x\">]><Error><Code>&m;</Code></Error>";
    CU_ASSERT_EQUAL(s3_xml_error(S(e), code, sizeof(code), msg, sizeof(msg)), -EINVAL);
    const char *u = "<!DOCTYPE r [<!ENTITY m \"x\">]><InitiateMultipartUploadResult>"
                    "<UploadId>&m;</UploadId></InitiateMultipartUploadResult>";
    CU_ASSERT_EQUAL(s3_xml_upload_id(S(u), id, sizeof(id), err, sizeof(err)), -EINVAL);
    const char *c = "<!DOCTYPE r><CompleteMultipartUploadResult/>";
    CU_ASSERT(s3_xml_complete(S(c), err, sizeof(err)) < 0);
}

static void test_error(void)
{
    char code[64], msg[128];
    const char *e = "<?xml version=\"1.0\"?><Error><Code>SlowDown</Code>"
                    "<Message>Please reduce your request rate.</Message><RequestId>1</RequestId>"
                    "</Error>";
    CU_ASSERT_EQUAL(s3_xml_error(S(e), code, sizeof(code), msg, sizeof(msg)), 1);
    CU_ASSERT_STRING_EQUAL(code, "SlowDown");
    CU_ASSERT_STRING_EQUAL(msg, "Please reduce your request rate.");
    CU_ASSERT_EQUAL(s3_xml_error(S("<ListBucketResult/>"), code, sizeof(code), msg, sizeof(msg)),
                    0);
    CU_ASSERT_EQUAL(s3_xml_error(S("<Error><Code>x"), code, sizeof(code), msg, sizeof(msg)),
                    -EINVAL);
    CU_ASSERT_EQUAL(s3_xml_error("", 0, code, sizeof(code), msg, sizeof(msg)), -EINVAL);
}

static void test_upload_id(void)
{
    char id[S3_XML_TOKEN_MAX + 1], err[256];
    const char *ok = "<InitiateMultipartUploadResult xmlns=\"http://s3.amazonaws.com/doc/"
                     "2006-03-01/\"><Bucket>cas</Bucket><Key>objects/ab</Key>"
                     "<UploadId>VXBsb2FkIElE+/=</UploadId></InitiateMultipartUploadResult>";
    CU_ASSERT_EQUAL(s3_xml_upload_id(S(ok), id, sizeof(id), err, sizeof(err)), 0);
    CU_ASSERT_STRING_EQUAL(id, "VXBsb2FkIElE+/=");
    const char *none = "<InitiateMultipartUploadResult><Bucket>cas</Bucket>"
                       "</InitiateMultipartUploadResult>";
    CU_ASSERT_EQUAL(s3_xml_upload_id(S(none), id, sizeof(id), err, sizeof(err)), -EINVAL);
    const char *empty = "<InitiateMultipartUploadResult><UploadId></UploadId>"
                        "</InitiateMultipartUploadResult>";
    CU_ASSERT_EQUAL(s3_xml_upload_id(S(empty), id, sizeof(id), err, sizeof(err)), -EINVAL);
    char small[4];
    CU_ASSERT_EQUAL(s3_xml_upload_id(S(ok), small, sizeof(small), err, sizeof(err)), -EINVAL);
    CU_ASSERT_EQUAL(s3_xml_upload_id(S("<Error><Code>NoSuchBucket</Code></Error>"), id, sizeof(id),
                                     err, sizeof(err)),
                    -EINVAL);
}

static void test_complete(void)
{
    char err[256];
    CU_ASSERT_EQUAL(s3_xml_complete(S("<CompleteMultipartUploadResult><Key>k</Key>"
                                      "</CompleteMultipartUploadResult>"),
                                    err, sizeof(err)),
                    0);
    /* S3 reports a failed completion as an <Error> under status 200. */
    CU_ASSERT_EQUAL(s3_xml_complete(S("<Error><Code>InternalError</Code><Message>We encountered "
                                      "an internal error.</Message></Error>"),
                                    err, sizeof(err)),
                    -EIO);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "InternalError"));
    CU_ASSERT_EQUAL(s3_xml_complete(S("<Other/>"), err, sizeof(err)), -EINVAL);
    CU_ASSERT_EQUAL(s3_xml_complete("", 0, err, sizeof(err)), -EINVAL);
}

static void test_client_helpers(void)
{
    char out[64];
    CU_ASSERT_EQUAL(s3_query_escape("a/b+c=d e~_.-", out, sizeof(out)), 0);
    CU_ASSERT_STRING_EQUAL(out, "a%2Fb%2Bc%3Dd%20e~_.-");
    char tiny[4];
    CU_ASSERT_EQUAL(s3_query_escape("////", tiny, sizeof(tiny)), -ENAMETOOLONG);
    /* The queries the backend sends are canonical; other forms are not. */
    CU_ASSERT(s3_query_canonical("list-type=2&prefix=objects%2F"));
    CU_ASSERT(s3_query_canonical("continuation-token=1%2Fa%2B%3D&list-type=2&prefix=tombs%2F"));
    CU_ASSERT(s3_query_canonical("partNumber=10000&uploadId=ab-C_d.e~"));
    CU_ASSERT(s3_query_canonical("uploads="));
    CU_ASSERT(s3_query_canonical("a=1&a=2&a-b=&ab="));
    CU_ASSERT(!s3_query_canonical("prefix=objects%2F&list-type=2")); /* unsorted */
    CU_ASSERT(!s3_query_canonical("a=2&a=1"));                       /* values unsorted */
    CU_ASSERT(!s3_query_canonical("a-b=&a="));                       /* "a" < "a-b" */
    CU_ASSERT(!s3_query_canonical("list-type=2&prefix=objects/"));   /* '/' unencoded */
    CU_ASSERT(!s3_query_canonical("uploads"));                       /* no '=' */
    CU_ASSERT(!s3_query_canonical("uploadId=a%2f"));                 /* lower-case hex */
    CU_ASSERT(!s3_query_canonical("uploadId=a%2"));                  /* cut escape */
    CU_ASSERT(!s3_query_canonical("a=1&&b=2"));
    CU_ASSERT(!s3_query_canonical("=1"));
    CU_ASSERT(!s3_query_canonical(""));
    CU_ASSERT(!s3_query_canonical("a=b c"));
    CU_ASSERT(s3_status_retryable(500));
    CU_ASSERT(s3_status_retryable(503));
    CU_ASSERT(!s3_status_retryable(403));
    CU_ASSERT(!s3_status_retryable(404));
    CU_ASSERT(!s3_status_retryable(400));

    struct s3_client c;
    char err[256];
    CU_ASSERT_EQUAL(s3_client_init(&c, "ftp://x", "cas", NULL, "a", "b", err, sizeof(err)),
                    -EINVAL);
    CU_ASSERT_EQUAL(s3_client_init(&c, "http://x", "Bad_Bucket", NULL, "a", "b", err, sizeof(err)),
                    -EINVAL);
    CU_ASSERT_EQUAL(s3_client_init(&c, "http://x", "cas", NULL, "a", "", err, sizeof(err)),
                    -EINVAL);
    CU_ASSERT_EQUAL(s3_client_init(&c, "http://x/", "cas", NULL, "a", "b", err, sizeof(err)), 0);
    CU_ASSERT_STRING_EQUAL(c.endpoint, "http://x");
    CU_ASSERT_STRING_EQUAL(c.region, "us-east-1");
    CU_ASSERT_STRING_EQUAL(c.sigv4, "aws:amz:us-east-1:s3");
    /* --s3-timeout-ms: the defaults, then one bound for all three. */
    CU_ASSERT_EQUAL(c.deadline_ms, 15000);
    CU_ASSERT_EQUAL(c.attempt_base_ms, 15000);
    CU_ASSERT_EQUAL(c.low_speed_s, 5);
    CU_ASSERT_EQUAL(c.connect_timeout_ms, 3000);
    s3_client_set_timeout(&c, 60000);
    CU_ASSERT_EQUAL(c.deadline_ms, 60000);
    CU_ASSERT_EQUAL(c.low_speed_s, 20);
    CU_ASSERT_EQUAL(c.connect_timeout_ms, 3000);
    s3_client_set_timeout(&c, 2000); /* a third is under 1 s: 1 s */
    CU_ASSERT_EQUAL(c.deadline_ms, 2000);
    CU_ASSERT_EQUAL(c.attempt_base_ms, 2000);
    CU_ASSERT_EQUAL(c.low_speed_s, 1);
    CU_ASSERT_EQUAL(c.connect_timeout_ms, 2000);
    s3_client_set_timeout(&c, 0);
    CU_ASSERT_EQUAL(c.deadline_ms, 15000);
    CU_ASSERT_EQUAL(c.connect_timeout_ms, 3000);
    s3_client_free(&c);
}

static void test_registry(void)
{
    CU_ASSERT_PTR_NOT_NULL(store_backend_find("disk"));
    CU_ASSERT_PTR_NOT_NULL(store_backend_find("s3"));
    CU_ASSERT_PTR_NULL(store_backend_find("nfs"));
    CU_ASSERT_PTR_NULL(store_backend_find(NULL));
    CU_ASSERT_STRING_EQUAL(store_backend_names(), "disk, s3");
    for (size_t i = 0; store_backends[i]; i++) {
        CU_ASSERT_PTR_NOT_NULL(store_backends[i]->open);
        CU_ASSERT(strlen(store_backends[i]->usage) > 10);
    }
    /* s3 without --capacity is refused before anything is touched. */
    struct store_options o = {.dir = "/nonexistent/cas-test",
                              .s3_endpoint = "http://127.0.0.1:1",
                              .s3_bucket = "cas",
                              .s3_access_key = "a",
                              .s3_secret_key = "b"};
    struct store *s = NULL;
    char err[256] = "";
    CU_ASSERT_EQUAL(store_backend_find("s3")->open(&o, &s, err, sizeof(err)), -EINVAL);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "--capacity"));
    CU_ASSERT_PTR_NULL(s);
}

int main(void)
{
    if (CU_initialize_registry() != CUE_SUCCESS)
        return 2;
    CU_pSuite s = CU_add_suite("s3_xml", NULL, NULL);
    CU_add_test(s, "ListObjectsV2: keys, 64-bit sizes, continuation", test_list);
    CU_add_test(s, "ListObjectsV2: bad sizes, missing fields, wrong root, cut short: refused",
                test_list_refuses);
    CU_add_test(s, "a DOCTYPE (entities, billion laughs, external) refused by every reader",
                test_doctype_refused);
    CU_add_test(s, "<Error>: code and message", test_error);
    CU_add_test(s, "InitiateMultipartUpload: UploadId or refused", test_upload_id);
    CU_add_test(s, "CompleteMultipartUpload: an <Error> under 200 is a failure", test_complete);
    CU_add_test(s, "client: query escaping and canonical form, retryable statuses, option checks, timeouts",
                test_client_helpers);
    CU_add_test(s, "backend registry: names, unknown, s3 needs --capacity", test_registry);
    CU_basic_set_mode(CU_BRM_VERBOSE);
    CU_basic_run_tests();
    unsigned failed = CU_get_number_of_failures();
    CU_cleanup_registry();
    return failed ? 1 : 0;
}
