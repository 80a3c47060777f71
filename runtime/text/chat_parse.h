/* chat_parse.h: reading what a Qwen3 model generates (docs/numerics.md §2.3).
 *
 * 1. A streaming splitter: fed one generated token at a time (its id and its
 *    decoded text), it separates the reasoning (<think> … </think>) from the
 *    answer and strips "\n" at both ends of the reasoning and at the start of
 *    the answer. Newlines at the end of the reasoning are held back until the
 *    next token shows whether they are inner or trailing, so nothing emitted is
 *    ever taken back. chat_split_all gives the same result in one call from
 *    the whole output (it is written independently, as the definition).
 * 2. A strict parser for the <tool_call>\n{json}\n</tool_call> blocks at the
 *    end of a finished answer.
 *
 * Neither decodes tokens: the caller passes text from the tokenizer (complete
 * UTF-8, e.g. from tok_stream_feed). The splitter only looks at '\n' bytes
 * and at the two think ids, whose text it never inspects. */
#ifndef MS_CHAT_PARSE_H
#define MS_CHAT_PARSE_H

#include <stddef.h>
#include <stdint.h>

#include "medserve.h"
#include "text/chat_json.h"

#define CHAT_THINK_START_ID 151667 /* <think>  (Qwen3, docs/numerics.md §2.1) */
#define CHAT_THINK_END_ID 151668   /* </think> */

/* How the prompt ended, which decides where the output starts. */
typedef enum chat_split_mode {
    CHAT_SPLIT_PLAIN = 0, /* "<|im_start|>assistant\n": output may open with <think> (thinking on) */
    CHAT_SPLIT_IN_THINK,  /* "<think>\n": output starts inside the reasoning (Thinking-2507 style) */
    CHAT_SPLIT_NO_THINK   /* the empty block "<think>\n\n</think>\n\n": all output is answer */
} chat_split_mode;

/* The mode for a rendered prompt, judged from how its text ends. */
chat_split_mode chat_split_mode_for_prompt(const char *prompt, size_t len);

/* What one step produced. Pointers stay valid until the next call on the splitter. */
typedef struct chat_delta {
    const char *reasoning;
    size_t reasoning_len;
    const char *content;
    size_t content_len;
} chat_delta;

typedef struct chat_splitter {
    int state;                 /* private */
    int32_t start_id, end_id;  /* the think ids */
    size_t held_nl;            /* reasoning newlines not yet known to be inner */
    size_t n_reasoning_tokens; /* tokens of the think block, <think> and </think> included */
    int saw_reasoning;         /* a reasoning section was entered */
    strbuf rbuf, cbuf;         /* storage of the last delta */
} chat_splitter;

/* Starts a splitter; ids are the think token ids (CHAT_THINK_*_ID for Qwen3). */
void chat_splitter_init(chat_splitter *s, chat_split_mode mode, int32_t think_start_id, int32_t think_end_id);
/* Feeds one generated token; d receives what can be emitted now. */
ms_status chat_splitter_feed(chat_splitter *s, int32_t id, const char *text, size_t len, chat_delta *d, ms_error *err);
/* Ends the output: emits whatever is still owed (held newlines are trailing and dropped). */
ms_status chat_splitter_flush(chat_splitter *s, chat_delta *d, ms_error *err);
/* Frees the delta storage; NULL-safe. */
void chat_splitter_free(chat_splitter *s);

typedef struct chat_split_result {
    char *reasoning; /* malloc'd, NUL-terminated ("" when none) */
    char *content;   /* malloc'd, NUL-terminated */
    size_t n_reasoning_tokens;
    int saw_reasoning;
} chat_split_result;

/* The whole output at once: ids[i] with text texts[i] of lens[i] bytes. */
ms_status chat_split_all(const int32_t *ids, const char *const *texts, const size_t *lens, size_t n,
                         chat_split_mode mode, int32_t think_start_id, int32_t think_end_id, chat_split_result *out,
                         ms_error *err);
void chat_split_result_free(chat_split_result *r);

#define CHAT_MAX_TOOL_CALLS 128

typedef struct chat_tool_call {
    char *name;      /* non-empty */
    char *arguments; /* JSON object text, ", "/": " separators, number literals as generated */
} chat_tool_call;

typedef struct chat_tool_calls {
    char *content; /* text before the first block, trailing "\n" removed; all of it if none */
    chat_tool_call *calls;
    size_t n;
} chat_tool_calls;

/* Parses a finished answer. Each block must be exactly "<tool_call>\n" + a
 * JSON object with only "name" (string) and "arguments" (object) +
 * "\n</tool_call>"; blocks may be separated and followed only by whitespace.
 * Anything else after the first "<tool_call>" is MS_ERR_FORMAT (the caller
 * can then return the text as plain content). No block: n = 0. */
ms_status chat_parse_tool_calls(const char *text, size_t len, chat_tool_calls *out, ms_error *err);
void chat_tool_calls_free(chat_tool_calls *t);

#endif
