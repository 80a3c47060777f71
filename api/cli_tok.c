/* cli_tok.c: placeholder until the subcommands land; says so and fails. */
#include <stdio.h>

#include "cli.h"

int cli_tokenize(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    fprintf(stderr, "medserve: this subcommand is not built yet\n");
    return 1;
}

int cli_detokenize(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    fprintf(stderr, "medserve: this subcommand is not built yet\n");
    return 1;
}
