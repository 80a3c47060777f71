/* job.h: one HTTP request's generations (n choices) in flight: submits them
 * to the service, turns the engine's token callbacks (engine thread) into a
 * queue of events the request's own thread waits on, together with the
 * client's socket (disconnect), a deadline and a server-wide abort (drain).
 * Lifetime is shared: the job lives until the HTTP side released it and every
 * submitted sequence delivered its final event. No HTTP, no JSON here. */
#ifndef MS_JOB_H
#define MS_JOB_H

#include <stddef.h>
#include <stdint.h>

#include "medserve.h"
#include "svc.h"

typedef struct job_event {
    int choice;
    int32_t token; /* -1: no token (a final event may carry none) */
    float logprob;
    int n_top;
    int32_t *top_ids; /* n_top, inside this allocation */
    float *top_lps;
    char *text; /* text_len bytes + NUL, inside this allocation */
    size_t text_len;
    ms_finish finish;
    ms_status status;
    char *error; /* when finish == MS_FINISH_ERROR, inside this allocation */
    size_t n_prompt, n_generated;
    double t; /* monotonic arrival time */
    struct job_event *next;
} job_event;

void job_event_free(job_event *ev);

/* Every job alive on the HTTP side, so a drain can count and abort them. */
typedef struct job_registry job_registry;
job_registry *job_registry_create(void);
void job_registry_free(job_registry *g); /* NULL-safe; must be empty */
int job_registry_count(job_registry *g);
/* Wakes every job's waiter with JOB_ABORT (reason kept for the error). */
void job_registry_abort(job_registry *g, const char *reason);
/* Cancels every submitted sequence of every job (engine frees their slots). */
void job_registry_cancel(job_registry *g);

typedef struct job job;

job *job_create(svc *s, job_registry *g, int n_choices, ms_error *err);
/* Submits choice's request; MS_ERR_BUSY etc. as the service returns them. */
ms_status job_submit(job *j, int choice, const ms_request *r, ms_error *err);

typedef enum job_wait {
    JOB_EVENT,   /* *ev is set; caller frees it */
    JOB_IDLE,    /* idle_s passed with nothing (e.g. time for a keep-alive) */
    JOB_TIMEOUT, /* the deadline passed */
    JOB_HANGUP,  /* the client closed its socket */
    JOB_ABORT,   /* the server aborts (drain timeout or engine fault) */
} job_wait;

/* Waits for the next event. sock_fd < 0: no disconnect check. */
job_wait job_next(job *j, int sock_fd, double deadline, double idle_s, job_event **ev);
/* The reason given to job_registry_abort. */
const char *job_abort_reason(job *j);
/* Cancels every submitted sequence that has not finished. */
void job_cancel(job *j);
/* Submitted sequences still without their final event. */
int job_pending(job *j);
/* HTTP side is done: cancels what still runs; freed once all finals arrived. NULL-safe. */
void job_release(job *j);

#endif
