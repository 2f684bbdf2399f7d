/*
 * jsonview.c - fuzzes the CLI's JSON reader (cli_jsonview in
 * ca-cas/jsonview.c), which parses a server's /status document, whatever it
 * holds, into a tree and prints it for `ca-cas status`: a full hand-written
 * parser (strings with escapes and UTF-16 surrogates, nesting, numbers).
 * Properties: success gives terminated text; failure gives a message;
 * deep nesting is refused rather than overflowing the stack (ASan).
 */
#include "cli.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *json = fuzz_cstr(data, size);
    struct cas_buf out;
    cas_buf_init(&out);
    char err[512] = "";
    int rc = cli_jsonview(json, &out, err, sizeof(err));
    if (rc == 0)
        FUZZ_CHECK(out.len == 0 || memchr(out.data, '\0', out.len + 1) != NULL);
    else
        FUZZ_CHECK(err[0] != '\0');
    cas_buf_free(&out);
    free(json);
    return 0;
}
