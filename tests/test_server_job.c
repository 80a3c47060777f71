/* test_server_job.c: the job event queue (server/job.c) over the fake engine
 * (server/svc_fake.c): events arrive in order with exactly one final event per
 * choice, cancel and release free the engine's slots, a full queue is BUSY,
 * and a registry abort wakes the waiter. Leaks show under ASan. Engine state
 * is waited for (ut_wait_until), and where a case needs a sequence still
 * running when it acts, the fake's steps are slow enough that the sequence
 * has seconds to go (its end is never a race with the case's next line). */
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include "http.h"
#include "job.h"
#include "svc.h"
#include "util.h"

/* A fake engine with a 256-token context. */
static svc *open_fake(int max_seqs, int max_queue, int step_us)
{
    svc_fake_params p = {256, max_seqs, max_queue, step_us, 0};
    svc *s = NULL;
    ms_error e;
    if (svc_fake_open(&p, &s, &e) != MS_OK) printf("  fake: %s\n", e.message);
    return s;
}

/* ut_wait_until predicate: the engine reports nothing running, queued or held. */
static int is_idle(void *svc_)
{
    svc *s = svc_;
    ms_engine_stats st;
    s->ops->stats(s->self, &st);
    return st.running == 0 && st.queued == 0 && st.kv_blocks_used == 0;
}

/* Waits up to UT_WAIT_S for the engine to be idle: the last event reaches the
 * job before the engine's worker frees the sequence, so one read right after
 * it can race. Returns 1 when idle. */
static int wait_idle(svc *s)
{
    return ut_wait_until(is_idle, s, UT_WAIT_S);
}

typedef struct running_arg {
    svc *s;
    int n;
} running_arg;

/* ut_wait_until predicate: the engine reports a->n sequences running. */
static int is_running(void *arg)
{
    running_arg *a = arg;
    ms_engine_stats st;
    a->s->ops->stats(a->s->self, &st);
    return st.running == a->n;
}

/* Waits up to UT_WAIT_S for the engine to report n sequences running. */
static int wait_running(svc *s, int n)
{
    running_arg a = {s, n};
    return ut_wait_until(is_running, &a, UT_WAIT_S);
}

/* A greedy request for prompt. */
static ms_request request(const int32_t *prompt, size_t n, int max_tokens)
{
    ms_request r;
    memset(&r, 0, sizeof r);
    r.prompt = prompt;
    r.n_prompt = n;
    r.max_tokens = max_tokens;
    r.sampling.greedy = 1;
    return r;
}

static const int32_t PROMPT[] = {104, 105, 33};

/* Runs n choices to the end; checks one final each and returns tokens seen. */
static int run_all(svc *s, job_registry *g, int n, int max_tokens, int32_t *first_tokens)
{
    ms_error e;
    job *j = job_create(s, g, n, &e);
    ms_request r = request(PROMPT, 3, max_tokens);
    for (int i = 0; i < n; i++) CHECK(job_submit(j, i, &r, &e) == MS_OK, "submit %d: %s", i, e.message);
    int finals[16] = {0}, tokens = 0, after_final = 0;
    int done = 0;
    while (done < n) {
        job_event *ev;
        job_wait w = job_next(j, -1, http_now() + UT_WAIT_S, UT_WAIT_S, &ev);
        CHECK(w == JOB_EVENT, "wait result %d", (int)w);
        if (w != JOB_EVENT) break;
        if (finals[ev->choice]) after_final++;
        if (ev->token >= 0) {
            if (first_tokens && ev->n_generated == 1) first_tokens[ev->choice] = ev->token;
            tokens++;
        }
        if (ev->finish != MS_FINISH_NONE) {
            finals[ev->choice]++;
            done++;
            CHECK(ev->n_prompt == 3, "n_prompt %zu", ev->n_prompt);
        }
        job_event_free(ev);
    }
    for (int i = 0; i < n; i++) CHECK(finals[i] == 1, "choice %d: %d finals", i, finals[i]);
    CHECK(after_final == 0, "%d events after a final", after_final);
    CHECK(job_pending(j) == 0, "pending");
    job_release(j);
    return tokens;
}

/* Choices complete with one final each; greedy repeats; the engine ends idle. */
static void t_complete(void)
{
    svc *s = open_fake(4, 16, 100);
    job_registry *g = job_registry_create();
    int32_t a[4] = {0}, b[4] = {0};
    int t1 = run_all(s, g, 3, 5, a);
    CHECK(t1 == 15, "3 choices x 5 tokens (length): %d", t1);
    run_all(s, g, 3, 5, b);
    CHECK(!memcmp(a, b, sizeof a), "greedy: same first tokens");
    CHECK(job_registry_count(g) == 0, "registry empty");
    CHECK(wait_idle(s), "engine idle within %.0f s", UT_WAIT_S);
    job_registry_free(g);
    svc_free(s);
}

/* Cancel and release free the engine's sequences before they would end: at
 * 50 ms a step, 250 tokens leave 12 s between the first event and the cancel. */
static void t_cancel_release(void)
{
    svc *s = open_fake(2, 16, 50000);
    job_registry *g = job_registry_create();
    ms_error e;
    job *j = job_create(s, g, 2, &e);
    ms_request r = request(PROMPT, 3, 250);
    CHECK(job_submit(j, 0, &r, &e) == MS_OK && job_submit(j, 1, &r, &e) == MS_OK, "submit");
    job_event *ev;
    CHECK(job_next(j, -1, http_now() + UT_WAIT_S, UT_WAIT_S, &ev) == JOB_EVENT, "first event");
    job_event_free(ev);
    job_cancel(j);
    int finals = 0, cancelled = 0, longest = 0;
    while (finals < 2 && job_next(j, -1, http_now() + UT_WAIT_S, UT_WAIT_S, &ev) == JOB_EVENT) {
        if (ev->finish != MS_FINISH_NONE) {
            finals++;
            cancelled += ev->finish == MS_FINISH_CANCELLED;
            if ((int)ev->n_generated > longest) longest = (int)ev->n_generated;
        }
        job_event_free(ev);
    }
    CHECK(finals == 2 && cancelled == 2, "cancel gives final CANCELLED events (%d, %d)", finals, cancelled);
    CHECK(longest < 250, "cancelled before the end: %d of 250 tokens", longest);
    job_release(j);
    /* release while running: slots freed, job freed by the last callback */
    j = job_create(s, g, 2, &e);
    job_submit(j, 0, &r, &e);
    job_submit(j, 1, &r, &e);
    CHECK(wait_running(s, 2), "both choices running");
    job_release(j);
    CHECK(wait_idle(s), "released job's sequences gone within %.0f s", UT_WAIT_S);
    job_registry_free(g);
    svc_free(s);
}

/* Queue full, context too long, deadline and registry abort. The first
 * sequence (250 tokens at 100 ms a step: 25 s) is still running when the
 * third choice finds the queue full. */
static void t_busy_abort_timeout(void)
{
    svc *s = open_fake(1, 1, 100000);
    job_registry *g = job_registry_create();
    ms_error e;
    job *j = job_create(s, g, 3, &e);
    ms_request r = request(PROMPT, 3, 250);
    CHECK(job_submit(j, 0, &r, &e) == MS_OK, "first");
    CHECK(wait_running(s, 1), "first running");
    CHECK(job_submit(j, 1, &r, &e) == MS_OK, "second waits in the queue");
    CHECK(job_submit(j, 2, &r, &e) == MS_ERR_BUSY, "third: queue full");
    CHECK(job_submit(j, 2, &r, &e) == MS_ERR_BUSY, "a refused choice can be retried");
    ms_request big = request(PROMPT, 3, 254);
    job *j2 = job_create(s, g, 1, &e);
    CHECK(job_submit(j2, 0, &big, &e) == MS_ERR_CONTEXT, "3 + 254 > 256");
    job_release(j2);
    job_event *ev = NULL;
    job_wait w;
    while ((w = job_next(j, -1, http_now() + 0.05, 5, &ev)) == JOB_EVENT) job_event_free(ev);
    CHECK(w == JOB_TIMEOUT, "deadline: %d", (int)w);
    job_registry_abort(g, "drain timeout");
    w = job_next(j, -1, http_now() + UT_WAIT_S, UT_WAIT_S, &ev);
    while (w == JOB_EVENT) {
        job_event_free(ev);
        w = job_next(j, -1, http_now() + UT_WAIT_S, UT_WAIT_S, &ev);
    }
    CHECK(w == JOB_ABORT && !strcmp(job_abort_reason(j), "drain timeout"), "abort: %d", (int)w);
    job_release(j);
    job_registry_free(g);
    svc_free(s);
}

/* A socket whose peer closed is reported as a hang-up. */
static void t_hangup(void)
{
    svc *s = open_fake(1, 4, 5000);
    ms_error e;
    job *j = job_create(s, NULL, 1, &e);
    int sv[2];
    CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0, "socketpair");
    ms_request r = request(PROMPT, 3, 100);
    job_submit(j, 0, &r, &e);
    close(sv[1]);
    job_event *ev = NULL;
    job_wait w;
    while ((w = job_next(j, sv[0], http_now() + UT_WAIT_S, UT_WAIT_S, &ev)) == JOB_EVENT) job_event_free(ev);
    CHECK(w == JOB_HANGUP, "hangup: %d", (int)w);
    close(sv[0]);
    job_release(j);
    svc_free(s);
}

int main(int argc, char **argv)
{
    static const test_case cases[] = {
        {"api_job_complete", t_complete},
        {"api_job_cancel_release", t_cancel_release},
        {"api_job_busy_abort_timeout", t_busy_abort_timeout},
        {"api_job_hangup", t_hangup},
    };
    return test_main(argc, argv, cases, sizeof cases / sizeof *cases);
}
