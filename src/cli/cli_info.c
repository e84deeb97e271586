/* `meridian info`: which region and version a node is. */
#include <stdio.h>

#include "cli.h"

int cli_info(struct cli *c)
{
    struct err e = {0};
    long status = 0;
    json_t *r = cli_call(c, "GET", "info", NULL, &status, &e);
    if (r == NULL || status != 200)
        return cli_fail(c, r, status, &e);
    static const char *const cols[] = {"region", "version", "storage", NULL};
    cli_print(c, r, cols);
    json_decref(r);
    return 0;
}
