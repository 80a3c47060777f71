/* cli.h: the subcommands of the `medserve` program. Each returns the
 * process exit code: 0 ok, 1 runtime failure, 2 bad input or usage. */
#ifndef MS_CLI_H
#define MS_CLI_H

int cli_generate(int argc, char **argv);   /* medserve generate DIR    (cli/cli_generate.c) */
int cli_tokenize(int argc, char **argv);   /* medserve tokenize DIR    (cli/cli_tok.c) */
int cli_detokenize(int argc, char **argv); /* medserve detokenize DIR  (cli/cli_tok.c) */
int cli_chat(int argc, char **argv);       /* medserve chat DIR        (cli/cli_chat.c) */

#endif
