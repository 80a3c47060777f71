/* serve.c: placeholder until the subcommand lands; says so and fails. */
#include <stdio.h>

#include "cli.h"

int cli_serve(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    fprintf(stderr, "medserve: this subcommand is not built yet\n");
    return 1;
}
