/* chat.h: the Qwen3 hybrid chat template, rendered natively and byte-identical
 * to transformers' apply_chat_template (reference.md §2.2). Reports which
 * byte ranges of the output came from message text (untrusted), so that the
 * tokenizer can refuse to turn them into control tokens. */
#ifndef MS_CHAT_H
#define MS_CHAT_H

#include <stddef.h>

#include "medserve.h"

typedef struct chat_msg {
    const char *role;              /* system, developer, user, assistant, tool */
    const char *content;           /* NULL treated as "" */
    const char *reasoning_content; /* NULL if absent */
    const char *tool_calls_json;   /* JSON array or NULL */
} chat_msg;

typedef struct chat_out {
    char *text;            /* NUL-terminated, malloc'd */
    size_t len;
    size_t *untrusted;     /* pairs [begin, end) into text, malloc'd */
    size_t n_untrusted;    /* number of pairs */
} chat_out;

/* tools_json: JSON array of tool objects or NULL. enable_thinking: -1 undefined
 * (template default), 0 false, 1 true. */
ms_status chat_render(const chat_msg *msgs, size_t n, const char *tools_json,
                      int add_generation_prompt, int enable_thinking, chat_out *out,
                      ms_error *err);
void chat_out_free(chat_out *o);

#endif
