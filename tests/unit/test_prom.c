/*
 * test_prom.c - CUnit suite for common/prom.c: label escaping and the
 * process metrics every daemon exports.
 */
#include "prom.h"

#include <CUnit/Basic.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void test_label_value(void)
{
    struct cas_buf b;
    cas_buf_init(&b);
    prom_label_value(&b, "plain");
    CU_ASSERT_STRING_EQUAL(b.data, "plain");
    cas_buf_reset(&b);
    prom_label_value(&b, "a\"b\\c\nd");
    CU_ASSERT_STRING_EQUAL(b.data, "a\\\"b\\\\c\\nd");
    cas_buf_reset(&b);
    prom_header(&b, "x_total", "counter", "Things.");
    CU_ASSERT_STRING_EQUAL(b.data, "# HELP x_total Things.\n# TYPE x_total counter\n");
    cas_buf_free(&b);
}

/* The value of the series named name (a whole line's start), or -1. */
static double value_of(const char *text, const char *name)
{
    size_t n = strlen(name);
    for (const char *p = text; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL)
        if (strncmp(p, name, n) == 0 && (p[n] == ' ' || p[n] == '{')) {
            const char *v = strchr(p, ' ');
            return v ? strtod(v + 1, NULL) : -1;
        }
    return -1;
}

static void test_process_metrics(void)
{
    struct cas_buf b;
    cas_buf_init(&b);
    prom_process_metrics(&b);
    double fds = value_of(b.data, "process_open_fds");
    CU_ASSERT(fds >= 3);
    /* one more descriptor is seen as one more */
    int fd = open("/dev/null", O_RDONLY);
    struct cas_buf c;
    cas_buf_init(&c);
    prom_process_metrics(&c);
    CU_ASSERT_EQUAL(value_of(c.data, "process_open_fds"), fds + 1);
    close(fd);
    CU_ASSERT(value_of(b.data, "process_resident_memory_bytes") > 1024 * 1024);
    CU_ASSERT(value_of(b.data, "process_virtual_memory_bytes") > 0);
    CU_ASSERT(value_of(b.data, "process_cpu_seconds_total") >= 0);
    CU_ASSERT(value_of(b.data, "process_max_fds") > 0);
    double start = value_of(b.data, "process_start_time_seconds");
    CU_ASSERT(start > 1.6e9 && start < 4e9);
    CU_ASSERT_PTR_NOT_NULL(strstr(b.data, "cas_build_info{program=\"test_prom\",version=\"" CAS_VERSION "\"} 1\n"));
    CU_ASSERT_PTR_NOT_NULL(strstr(b.data, "# TYPE process_open_fds gauge\n"));
    cas_buf_free(&b);
    cas_buf_free(&c);
}

int main(void)
{
    if (CU_initialize_registry() != CUE_SUCCESS)
        return 2;
    CU_pSuite s = CU_add_suite("prom", NULL, NULL);
    CU_add_test(s, "label values and headers", test_label_value);
    CU_add_test(s, "process metrics and build info", test_process_metrics);
    CU_basic_set_mode(CU_BRM_VERBOSE);
    CU_basic_run_tests();
    unsigned failed = CU_get_number_of_failures();
    CU_cleanup_registry();
    return failed ? 1 : 0;
}
