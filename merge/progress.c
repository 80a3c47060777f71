/* progress.c: the terminal progress line (see progress.h). */
#include "progress.h"

#include <string.h>
#include <time.h>
#include <unistd.h>

/* Monotonic seconds. */
double mg_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* Sets up the bar. */
void mg_bar_init(mg_bar *b, FILE *f)
{
    memset(b, 0, sizeof *b);
    b->f = f;
    b->enabled = f && isatty(fileno(f));
    b->t0 = mg_now();
}

/* Erases the drawn line. */
void mg_bar_clear(mg_bar *b)
{
    if (!b || !b->drawn) return;
    fprintf(b->f, "\r\033[K");
    fflush(b->f);
    b->drawn = 0;
}

/* Redraws the line (throttled); the rate and ETA restart with each phase. */
void mg_bar_update(void *user, const mg_progress *p)
{
    mg_bar *b = user;
    if (!b || !b->enabled) return;
    double now = mg_now();
    const char *ph = p->phase ? p->phase : "";
    if (strcmp(ph, b->phase)) {
        snprintf(b->phase, sizeof b->phase, "%s", ph);
        b->phase_t0 = now;
        b->drawn = 0;
    }
    int is_merge = !strcmp(ph, "merge");
    int done = p->bytes_done >= p->bytes_total;
    if (!done && now - b->last < 0.2 && b->drawn) return;
    b->last = now;
    double el = now - b->phase_t0, frac = p->bytes_total ? (double)p->bytes_done / (double)p->bytes_total : 1;
    double eta = frac > 0.001 ? el * (1 - frac) / frac : 0;
    int w = 24, fill = (int)(frac * w + 0.5);
    char bar[32], tens[64] = "";
    for (int i = 0; i < w; i++) bar[i] = i < fill ? '#' : '.';
    bar[w] = '\0';
    if (is_merge) snprintf(tens, sizeof tens, "  %zu/%zu tensors", p->tensors_done, p->tensors_total);
    fprintf(b->f, "\r\033[K[%s] %s%s  %.2f/%.2f GB  %.0f MB/s  ETA %d:%02d", ph, bar, tens, p->bytes_done / 1e9,
            p->bytes_total / 1e9, el > 0 ? p->bytes_done / 1e6 / el : 0.0, (int)eta / 60, (int)eta % 60);
    fflush(b->f);
    b->drawn = 1;
}
