/* oai_resp.h: building OpenAI-shaped bodies: errors, the common envelope
 * (id, object, created, model, system_fingerprint), usage, and sending JSON
 * replies. Everything is built with cJSON, so strings are always escaped.
 * Which fields a completion carries is decided by the caller (gen.c). */
#ifndef MS_OAI_RESP_H
#define MS_OAI_RESP_H

#include <stdint.h>
#include <time.h>

#include <cjson/cJSON.h>

#include "http.h"
#include "oai_req.h"

/* {"error":{"message","type","param","code"}} as text; malloc'd (NULL on OOM). */
char *oai_error_body(const oai_err *e);
/* Sends e with its status; 429 and 503 get Retry-After. */
void oai_reply_error(http_req *r, const oai_err *e);
/* Sends obj (then frees it) with status and application/json. */
void oai_reply_json(http_req *r, int status, cJSON *obj);

/* {"id","object","created","model","system_fingerprint"}. */
cJSON *oai_envelope(const char *id, const char *object, time_t created, const char *model,
                    const char *fingerprint);
/* {"prompt_tokens","completion_tokens","total_tokens",
 *  "prompt_tokens_details":{"cached_tokens":0},
 *  "completion_tokens_details":{"reasoning_tokens"}}. */
cJSON *oai_usage(uint64_t prompt, uint64_t completion, uint64_t reasoning);
/* OpenAI's finish_reason string, or NULL for none. */
const char *oai_finish_name(int ms_finish_value);
/* Maps a library status to an HTTP status and error type/code. */
void oai_err_from_status(oai_err *e, ms_status st, const char *message);

#endif
