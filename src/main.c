/* argv -> serve | front | <noun> <verb>; nothing else. */
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "front.h"
#include "server.h"

static void usage(FILE *out)
{
    /* The nouns come from the CLI's own table, so this list never goes stale. */
    fprintf(out, "usage: meridian <command> [options]\n\n"
                 "commands:\n"
                 "  serve      run a registry node (see meridian serve --help)\n"
                 "  front      run the registry's entry point (see meridian front --help)\n"
                 "  version    print the version\n"
                 "  <noun> <verb> ...  manage a registry through a node's management API:\n");
    cli_usage(out);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (strcmp(argv[1], "serve") == 0)
        return server_main(argc - 2, argv + 2);
    if (strcmp(argv[1], "front") == 0)
        return front_main(argc - 2, argv + 2);
    if (strcmp(argv[1], "version") == 0 || strcmp(argv[1], "--version") == 0) {
        printf("meridian 0.1.0\n");
        return 0;
    }
    if (strcmp(argv[1], "help") == 0 || strcmp(argv[1], "--help") == 0 ||
        strcmp(argv[1], "-h") == 0) {
        usage(stdout);
        return 0;
    }
    return cli_main(argc - 1, argv + 1);
}
