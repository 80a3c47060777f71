/* chat.h: the Qwen3 hybrid chat template, rendered natively and byte-identical
 * to transformers' apply_chat_template (docs/numerics.md §2.2). Reports which
 * byte ranges of the output came from message text (untrusted), so that the
 * tokenizer can refuse to turn them into control tokens. Also turns an
 * OpenAI-style JSON messages array into chat_msg records. */
#ifndef MS_CHAT_H
#define MS_CHAT_H

#include <stddef.h>

#include <cjson/cJSON.h>

#include "medserve.h"

#define CHAT_MAX_MESSAGES 100000

typedef struct chat_msg {
    const char *role;              /* system, developer, user, assistant, tool; others render nothing */
    const char *content;           /* NULL treated as "" (see chat_render) */
    const char *reasoning_content; /* NULL if absent */
    const char *tool_calls_json;   /* JSON array or NULL */
} chat_msg;

typedef struct chat_out {
    char *text; /* NUL-terminated, malloc'd */
    size_t len;
    size_t *untrusted;  /* pairs [begin, end) into text, malloc'd; sorted, disjoint, non-empty */
    size_t n_untrusted; /* number of pairs */
} chat_out;

/* tools_json: JSON array of tool objects or NULL. enable_thinking: -1 undefined
 * (template default), 0 false, 1 true.
 *
 * Follows the template (tests/data/qwen3-tokenizer/tokenizer_config.json),
 * including its quirks: roles other than system/user/assistant/tool (e.g.
 * "developer") render nothing; a system message that is not first renders as
 * its own system turn; an empty tools array counts as no tools. Where
 * transformers would raise instead (NULL content of a user, system or
 * assistant message: it drops None keys and the template then fails), NULL
 * content is rendered as "", which is what the template gives for "" and for
 * a tool message without content. tool_calls_json entries are objects with
 * "name" (string) and "arguments" (a string, copied as is, or any other JSON
 * value, written as tojson), optionally wrapped in a non-empty "function"
 * object. At least one message is required (transformers refuses none). */
ms_status chat_render(const chat_msg *msgs, size_t n, const char *tools_json, int add_generation_prompt,
                      int enable_thinking, chat_out *out, ms_error *err);
void chat_out_free(chat_out *o);

/* 1 if template_text is the Qwen3 hybrid template this renderer reproduces
 * (text compared exactly, ignoring trailing whitespace, as chat_template.jinja
 * files end in a newline), 0 otherwise (NULL included). */
int chat_template_is_qwen3(const char *template_text);

/* Messages built from JSON, with the strings they point to owned here. */
typedef struct chat_conv {
    chat_msg *msgs;
    size_t n;
    char *tools_json; /* JSON of a non-empty tools array (number literals kept), or NULL */
    char **owned;     /* strings msgs and tools_json point into */
    size_t n_owned, cap_owned;
} chat_conv;

/* Reads an OpenAI/transformers messages array (and optional tools array; NULL
 * or JSON null for none). Per message: "role" (string, required); "content"
 * a string, null/absent, or an array of {"type":"text","text":...} parts
 * joined with "\n"; reasoning from the first non-null of "reasoning_content",
 * "thinking", "reasoning" (transformers 5 reads the same aliases);
 * "tool_calls" an array (null = absent). Other keys are ignored, as the
 * template ignores them. For exact numbers in tools and tool-call arguments,
 * parse the request with chat_json_parse (chat_json.h). what names the source
 * in error messages. */
ms_status chat_conv_from_json(const cJSON *messages, const cJSON *tools, chat_conv *out, const char *what,
                              ms_error *err);
void chat_conv_free(chat_conv *c);

#endif
