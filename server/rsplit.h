/* rsplit.h: the server's view of the reasoning/answer splitter for chat
 * output: generated tokens go in one at a time (id + their decoded text),
 * reasoning and content deltas come out, never to be taken back. A thin
 * adapter over runtime/text/chat_parse.h; the splitting rules
 * (docs/numerics.md §2.3) live there, not here. */
#ifndef MS_RSPLIT_H
#define MS_RSPLIT_H

#include <stddef.h>
#include <stdint.h>

#include "base/strbuf.h"
#include "svc.h"

typedef struct rsplit rsplit;

/* prompt: the full prompt ids (its tail tells whether the output starts
 * inside a think block). NULL on allocation failure. */
rsplit *rsplit_create(const svc *s, const int32_t *prompt, size_t n_prompt);
/* Feeds one token; appends what can be decided to reasoning and content. */
void rsplit_feed(rsplit *r, int32_t token, const char *text, size_t len, strbuf *reasoning, strbuf *content);
/* End of output: appends what was held back. */
void rsplit_flush(rsplit *r, strbuf *reasoning, strbuf *content);
/* Tokens counted as reasoning so far. */
size_t rsplit_reasoning_tokens(const rsplit *r);
void rsplit_free(rsplit *r);

#endif
