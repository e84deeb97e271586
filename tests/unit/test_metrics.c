/* metrics.c: the registry of metric sources renders what upper layers register, after
 * the counters, in the order added, and stops once a source is removed. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "buf.h"
#include "metrics.h"

static void render_a(void *arg, struct buf *out)
{
    buf_printf(out, "source_a %d\n", *(int *)arg);
}

static void render_b(void *arg, struct buf *out)
{
    (void)arg;
    buf_appends(out, "source_b 2\n");
}

static char *render(struct buf *b)
{
    buf_init(b, 1024 * 1024);
    metrics_render(b);
    buf_append(b, "", 1); /* NUL-terminated for strstr */
    return b->data;
}

static void test_sources_render_in_order_after_counters(void **state)
{
    (void)state;
    int one = 1;
    assert_int_equal(metrics_source_add(render_a, &one), 0);
    assert_int_equal(metrics_source_add(render_b, NULL), 0);
    struct buf b;
    const char *s = render(&b);
    const char *a = strstr(s, "source_a 1\n");
    const char *bb = strstr(s, "source_b 2\n");
    const char *counters = strstr(s, "meridian_http_bytes_in_total");
    assert_non_null(a);
    assert_non_null(bb);
    assert_non_null(counters);
    assert_true(counters < a);
    assert_true(a < bb);
    buf_fini(&b);

    metrics_source_remove(render_a, &one);
    s = render(&b);
    assert_null(strstr(s, "source_a"));
    assert_non_null(strstr(s, "source_b 2\n"));
    buf_fini(&b);
    metrics_source_remove(render_b, NULL);
    s = render(&b);
    assert_null(strstr(s, "source_b"));
    buf_fini(&b);
}

static void test_sources_table_is_bounded(void **state)
{
    (void)state;
    int args[METRICS_SOURCES_MAX + 1];
    for (int i = 0; i < METRICS_SOURCES_MAX; i++)
        assert_int_equal(metrics_source_add(render_a, &args[i]), 0);
    assert_int_equal(metrics_source_add(render_a, &args[METRICS_SOURCES_MAX]), -1);
    for (int i = 0; i < METRICS_SOURCES_MAX; i++)
        metrics_source_remove(render_a, &args[i]);
    assert_int_equal(metrics_source_add(render_b, NULL), 0);
    metrics_source_remove(render_b, NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sources_render_in_order_after_counters),
        cmocka_unit_test(test_sources_table_is_bounded),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
