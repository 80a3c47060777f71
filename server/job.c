/* job.c: engine callbacks -> per-request event queue (see job.h). The
 * callback runs on the engine thread: it copies the event, appends it under
 * the job's lock and wakes the waiter through an eventfd; it never blocks.
 * The waiter polls the eventfd and the client's socket (POLLRDHUP) so a
 * disconnect is noticed while the request waits or streams. */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "base/err.h"
#include "http.h"
#include "job.h"

#define JOB_MAX_CHOICES 1024

struct job_registry {
    pthread_mutex_t mu;
    job *head;
    int count;
};

typedef struct job_seq {
    job *j;
    int choice;
    uint64_t id;
    int submitted, finished;
} job_seq;

struct job {
    svc *s;
    job_registry *g;
    job *prev, *next; /* registry links, under g->mu */
    pthread_mutex_t mu;
    int efd;
    int refs; /* 1 for the HTTP side + 1 per unfinished submitted seq */
    int released, aborted;
    char abort_reason[128];
    job_event *head, *tail;
    int n;
    job_seq *seqs;
};

void job_event_free(job_event *ev)
{
    free(ev);
}

/* A registry with no jobs (NULL when out of memory). */
job_registry *job_registry_create(void)
{
    job_registry *g = calloc(1, sizeof *g);
    if (g) pthread_mutex_init(&g->mu, NULL);
    return g;
}

/* Frees an (empty) registry; NULL-safe. */
void job_registry_free(job_registry *g)
{
    if (!g) return;
    pthread_mutex_destroy(&g->mu);
    free(g);
}

/* Jobs whose HTTP side is still alive. */
int job_registry_count(job_registry *g)
{
    pthread_mutex_lock(&g->mu);
    int n = g->count;
    pthread_mutex_unlock(&g->mu);
    return n;
}

/* Wakes j's waiter. Caller holds j->mu. */
static void wake(job *j)
{
    uint64_t one = 1;
    ssize_t w = write(j->efd, &one, sizeof one);
    (void)w; /* EAGAIN means the counter is already non-zero: awake anyway */
}

/* Sets every job aborted and wakes its waiter. */
void job_registry_abort(job_registry *g, const char *reason)
{
    pthread_mutex_lock(&g->mu);
    for (job *j = g->head; j; j = j->next) {
        pthread_mutex_lock(&j->mu);
        j->aborted = 1;
        snprintf(j->abort_reason, sizeof j->abort_reason, "%s", reason ? reason : "aborted");
        wake(j);
        pthread_mutex_unlock(&j->mu);
    }
    pthread_mutex_unlock(&g->mu);
}

/* Cancels the submitted sequences of every registered job. */
void job_registry_cancel(job_registry *g)
{
    pthread_mutex_lock(&g->mu);
    for (job *j = g->head; j; j = j->next) job_cancel(j);
    pthread_mutex_unlock(&g->mu);
}

/* Frees j (refs reached 0). */
static void job_destroy(job *j)
{
    job_event *e = j->head;
    while (e) {
        job_event *nx = e->next;
        free(e);
        e = nx;
    }
    if (j->efd >= 0) close(j->efd);
    pthread_mutex_destroy(&j->mu);
    free(j->seqs);
    free(j);
}

/* Allocates the job and its eventfd and registers it. */
job *job_create(svc *s, job_registry *g, int n_choices, ms_error *err)
{
    if (n_choices < 1 || n_choices > JOB_MAX_CHOICES) {
        ms_seterr(err, MS_ERR_INVALID, "job: %d choices is out of range", n_choices);
        return NULL;
    }
    job *j = calloc(1, sizeof *j);
    job_seq *seqs = calloc((size_t)n_choices, sizeof *seqs);
    int efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (!j || !seqs || efd < 0) {
        free(j);
        free(seqs);
        if (efd >= 0) close(efd);
        ms_seterr(err, MS_ERR_NOMEM, "job: out of memory or file descriptors");
        return NULL;
    }
    j->s = s;
    j->g = g;
    j->efd = efd;
    j->refs = 1;
    j->n = n_choices;
    j->seqs = seqs;
    for (int i = 0; i < n_choices; i++) {
        seqs[i].j = j;
        seqs[i].choice = i;
    }
    pthread_mutex_init(&j->mu, NULL);
    if (g) {
        pthread_mutex_lock(&g->mu);
        j->next = g->head;
        if (g->head) g->head->prev = j;
        g->head = j;
        g->count++;
        pthread_mutex_unlock(&g->mu);
    }
    return j;
}

/* Engine callback: copies ev into the queue (or drops it once released). */
static int on_token(const ms_token_event *ev, void *user)
{
    job_seq *q = user;
    job *j = q->j;
    size_t n_top = ev->n_top > 0 ? (size_t)ev->n_top : 0;
    size_t tlen = ev->text ? ev->text_len : 0;
    size_t elen = ev->finish == MS_FINISH_ERROR && ev->error ? strlen(ev->error) : 0;
    job_event *e = NULL;
    pthread_mutex_lock(&j->mu);
    int released = j->released;
    pthread_mutex_unlock(&j->mu);
    if (!released) {
        /* layout: struct | top ids | top lps | text NUL | error NUL */
        size_t sz = sizeof *e + n_top * (sizeof(int32_t) + sizeof(float)) + tlen + 1 + elen + 1;
        e = malloc(sz);
    }
    if (e) {
        memset(e, 0, sizeof *e);
        e->choice = q->choice;
        e->token = ev->token;
        e->logprob = ev->logprob;
        e->n_top = (int)n_top;
        e->top_ids = (int32_t *)(void *)(e + 1);
        e->top_lps = (float *)(void *)(e->top_ids + n_top);
        e->text = (char *)(e->top_lps + n_top);
        e->error = e->text + tlen + 1;
        if (n_top) {
            memcpy(e->top_ids, ev->top_ids, n_top * sizeof(int32_t));
            memcpy(e->top_lps, ev->top_logprobs, n_top * sizeof(float));
        }
        if (tlen) memcpy(e->text, ev->text, tlen);
        e->text[tlen] = 0;
        e->text_len = tlen;
        if (elen) memcpy(e->error, ev->error, elen);
        e->error[elen] = 0;
        e->finish = ev->finish;
        e->status = ev->status;
        e->n_prompt = ev->n_prompt;
        e->n_generated = ev->n_generated;
        e->t = http_now();
    }
    int fin = ev->finish != MS_FINISH_NONE;
    pthread_mutex_lock(&j->mu);
    int cancel = j->released;
    if (e && !j->released) {
        if (j->tail) j->tail->next = e;
        else j->head = e;
        j->tail = e;
        e = NULL;
    } else if (!e && !j->released && fin) {
        /* out of memory for the final event: the waiter must still learn the
         * sequence ended; mark it and let job_next report an error event */
        j->aborted = 1;
        snprintf(j->abort_reason, sizeof j->abort_reason, "out of memory delivering an event");
    }
    if (fin) {
        q->finished = 1;
        j->refs--;
    }
    wake(j);
    int refs = j->refs;
    pthread_mutex_unlock(&j->mu);
    free(e);
    if (fin && refs == 0) job_destroy(j);
    return cancel;
}

/* Takes a reference for the sequence before submitting (the callback may run first). */
ms_status job_submit(job *j, int choice, const ms_request *r, ms_error *err)
{
    if (choice < 0 || choice >= j->n || j->seqs[choice].submitted)
        return ms_seterr(err, MS_ERR_INVALID, "job: choice %d cannot be submitted", choice);
    job_seq *q = &j->seqs[choice];
    pthread_mutex_lock(&j->mu);
    j->refs++; /* the callback may fire before submit returns */
    q->submitted = 1;
    pthread_mutex_unlock(&j->mu);
    uint64_t id = 0;
    ms_status st = j->s->ops->submit(j->s->self, r, on_token, q, &id, err);
    pthread_mutex_lock(&j->mu);
    if (st == MS_OK) {
        q->id = id;
    } else {
        q->submitted = 0;
        j->refs--;
    }
    pthread_mutex_unlock(&j->mu);
    return st;
}

/* Pops an event, else polls the eventfd and the socket until the deadline or idle time. */
job_wait job_next(job *j, int sock_fd, double deadline, double idle_s, job_event **ev)
{
    *ev = NULL;
    double idle_until = http_now() + idle_s;
    for (;;) {
        pthread_mutex_lock(&j->mu);
        job_event *e = j->head;
        if (e) {
            j->head = e->next;
            if (!j->head) j->tail = NULL;
            e->next = NULL;
        }
        int aborted = j->aborted;
        pthread_mutex_unlock(&j->mu);
        if (e) {
            *ev = e;
            return JOB_EVENT;
        }
        if (aborted) return JOB_ABORT;
        double now = http_now();
        if (now >= deadline) return JOB_TIMEOUT;
        if (now >= idle_until) return JOB_IDLE;
        double until = deadline < idle_until ? deadline : idle_until;
        int ms = (int)((until - now) * 1000.0) + 1;
        struct pollfd p[2] = {{j->efd, POLLIN, 0}, {sock_fd, POLLRDHUP, 0}};
        int rc = poll(p, sock_fd >= 0 ? 2 : 1, ms);
        if (rc < 0 && errno != EINTR) return JOB_HANGUP;
        if (rc <= 0) continue;
        if (sock_fd >= 0 && (p[1].revents & (POLLRDHUP | POLLHUP | POLLERR | POLLNVAL))) return JOB_HANGUP;
        if (p[0].revents & POLLIN) {
            uint64_t v;
            ssize_t rd = read(j->efd, &v, sizeof v);
            (void)rd;
        }
    }
}

/* The reason text, or "aborted". */
const char *job_abort_reason(job *j)
{
    return j->abort_reason[0] ? j->abort_reason : "aborted";
}

/* Cancels, outside the lock, every submitted sequence without a final event. */
void job_cancel(job *j)
{
    uint64_t ids[64];
    int k = 0;
    for (int i = 0; i < j->n;) {
        /* collect under the lock, cancel outside it (cancel may call back) */
        pthread_mutex_lock(&j->mu);
        for (k = 0; i < j->n && k < 64; i++)
            if (j->seqs[i].submitted && !j->seqs[i].finished) ids[k++] = j->seqs[i].id;
        pthread_mutex_unlock(&j->mu);
        for (int t = 0; t < k; t++) j->s->ops->cancel(j->s->self, ids[t]);
    }
}

/* Counts submitted sequences still waiting for their final event. */
int job_pending(job *j)
{
    pthread_mutex_lock(&j->mu);
    int n = 0;
    for (int i = 0; i < j->n; i++) n += j->seqs[i].submitted && !j->seqs[i].finished;
    pthread_mutex_unlock(&j->mu);
    return n;
}

/* Unregisters, cancels what runs, and drops the HTTP reference. */
void job_release(job *j)
{
    if (!j) return;
    job_registry *g = j->g;
    if (g) {
        pthread_mutex_lock(&g->mu);
        if (j->prev) j->prev->next = j->next;
        else g->head = j->next;
        if (j->next) j->next->prev = j->prev;
        g->count--;
        pthread_mutex_unlock(&g->mu);
    }
    job_cancel(j);
    pthread_mutex_lock(&j->mu);
    j->released = 1;
    int refs = --j->refs;
    pthread_mutex_unlock(&j->mu);
    if (refs == 0) job_destroy(j);
}
