/* serve.h: `medserve DIR [options]`, the server's entry point (serve.c),
 * called by the medserve program (cli/main.c). Returns the process exit
 * code: 0 ok (drained), 1 runtime failure, 2 bad input or usage. */
#ifndef MS_SERVE_H
#define MS_SERVE_H

int serve_main(int argc, char **argv);

#endif
