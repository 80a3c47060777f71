/* main.c: the `medserve` program: dispatches to the subcommands in cli.h.
 * `medserve DIR [options]` (no subcommand) serves DIR over HTTP. */
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "medserve.h"
#include "serve.h"

static void usage(FILE *f)
{
    fprintf(f, "usage: medserve DIR [--host H] [--port P] [options]   serve DIR over HTTP (OpenAI API)\n"
               "       medserve generate DIR [--prompt TEXT] [options] generate text locally\n"
               "       medserve tokenize DIR      JSON lines {\"text\":...} in, {\"ids\":[...]} out\n"
               "       medserve detokenize DIR    JSON lines {\"ids\":[...]} in, {\"text\":...} out\n"
               "       medserve chat DIR          JSON lines {\"messages\":[...]} in, rendered text and ids out\n"
               "       medserve --version | --help\n"
               "Each subcommand takes --help.\n");
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    const char *cmd = argv[1];
    if (!strcmp(cmd, "--help") || !strcmp(cmd, "-h")) {
        usage(stdout);
        return 0;
    }
    if (!strcmp(cmd, "--version")) {
        printf("medserve %s\n", ms_version());
        return 0;
    }
    if (!strcmp(cmd, "serve")) return serve_main(argc - 1, argv + 1);
    if (!strcmp(cmd, "generate")) return cli_generate(argc - 1, argv + 1);
    if (!strcmp(cmd, "tokenize")) return cli_tokenize(argc - 1, argv + 1);
    if (!strcmp(cmd, "detokenize")) return cli_detokenize(argc - 1, argv + 1);
    if (!strcmp(cmd, "chat")) return cli_chat(argc - 1, argv + 1);
    return serve_main(argc, argv); /* medserve DIR ... : argv[1] is the directory */
}
