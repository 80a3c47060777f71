/* progress.h: the progress line of lora-merge on a terminal: phase, tensors,
 * bytes, rate and ETA, redrawn in place at most every 200 ms. Quiet when the
 * stream is not a TTY (a pipe or a log file gets only the final summary). */
#ifndef MG_PROGRESS_H
#define MG_PROGRESS_H

#include <stdio.h>

#include "mg.h"

typedef struct mg_bar {
    FILE *f;
    int enabled;     /* f is a TTY */
    double t0, last; /* seconds */
    double phase_t0; /* when the current phase started (for rate and ETA) */
    char phase[32];
    int drawn;
} mg_bar;

/* Sets up the bar on f; enabled only if f is a terminal. */
void mg_bar_init(mg_bar *b, FILE *f);
/* The progress callback for mg_opts.progress (user = the mg_bar). */
void mg_bar_update(void *user, const mg_progress *p);
/* Erases the line if one is drawn (before printing other messages). */
void mg_bar_clear(mg_bar *b);
/* Monotonic seconds. */
double mg_now(void);

#endif
