/* rsplit.c: adapter from the server to chat_parse.h's streaming splitter
 * (see rsplit.h). Decides the splitter's mode from the decoded tail of the
 * prompt, and copies each delta out (chat_parse's pointers are short-lived). */
#include <stdlib.h>
#include <string.h>

#include "rsplit.h"
#include "text/chat_parse.h"

#define RSPLIT_TAIL_TOKENS 16 /* enough to see "<think>\n\n</think>\n\n" */

struct rsplit {
    chat_splitter sp;
    int failed; /* the splitter reported an error: pass text through as content */
};

/* Chooses the splitter mode from the decoded prompt tail. */
rsplit *rsplit_create(const svc *s, const int32_t *prompt, size_t n_prompt)
{
    rsplit *r = calloc(1, sizeof *r);
    if (!r) return NULL;
    chat_split_mode mode = CHAT_SPLIT_PLAIN;
    size_t k = n_prompt < RSPLIT_TAIL_TOKENS ? n_prompt : RSPLIT_TAIL_TOKENS;
    char *tail = NULL;
    size_t len = 0;
    ms_error err;
    if (k && s->ops->detokenize(s->self, prompt + n_prompt - k, k, 0, &tail, &len, &err) == MS_OK)
        mode = chat_split_mode_for_prompt(tail, len);
    free(tail);
    chat_splitter_init(&r->sp, mode, s->think_open_id >= 0 ? s->think_open_id : CHAT_THINK_START_ID,
                       s->think_close_id >= 0 ? s->think_close_id : CHAT_THINK_END_ID);
    return r;
}

/* Appends a delta to the caller's buffers. */
static void put(const chat_delta *d, strbuf *reasoning, strbuf *content)
{
    if (d->reasoning_len) sb_append(reasoning, d->reasoning, d->reasoning_len);
    if (d->content_len) sb_append(content, d->content, d->content_len);
}

/* Feeds one token; after a splitter error the rest passes through as content. */
void rsplit_feed(rsplit *r, int32_t token, const char *text, size_t len, strbuf *reasoning, strbuf *content)
{
    if (r->failed) {
        sb_append(content, text, len);
        return;
    }
    chat_delta d;
    ms_error err;
    memset(&d, 0, sizeof d);
    if (chat_splitter_feed(&r->sp, token, text, len, &d, &err) != MS_OK) {
        r->failed = 1;
        sb_append(content, text, len);
        return;
    }
    put(&d, reasoning, content);
}

/* Emits what the splitter held back at the end of the output. */
void rsplit_flush(rsplit *r, strbuf *reasoning, strbuf *content)
{
    if (r->failed) return;
    chat_delta d;
    ms_error err;
    memset(&d, 0, sizeof d);
    if (chat_splitter_flush(&r->sp, &d, &err) == MS_OK) put(&d, reasoning, content);
}

size_t rsplit_reasoning_tokens(const rsplit *r)
{
    return r->sp.n_reasoning_tokens;
}

/* Frees the splitter; NULL-safe. */
void rsplit_free(rsplit *r)
{
    if (!r) return;
    chat_splitter_free(&r->sp);
    free(r);
}
