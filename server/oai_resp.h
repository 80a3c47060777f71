/* oai_resp.h: the JSON bodies medserve answers with, and sending them:
 * OpenAI's error object, the common envelope (id, object, created, model,
 * system_fingerprint), usage, the model objects of /v1/models, and the bodies
 * of /health, /tokenize and /detokenize. Everything is built with cJSON, so
 * strings are always escaped. Which fields a completion carries is decided
 * by the caller (gen.c). */
#ifndef MS_OAI_RESP_H
#define MS_OAI_RESP_H

#include <stddef.h>
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
/* {"id","object":"model","created","owned_by":"medserve","max_model_len","manifest_sha256"}. */
cJSON *oai_model(const char *id, time_t created, int max_model_len, const char *manifest_sha256);
/* {"object":"list","data":[model]}; model is moved in. */
cJSON *oai_model_list(cJSON *model);
/* {"status"}: the body of /health. */
cJSON *oai_health(const char *status);
/* {"tokens":[ids],"count","max_model_len"}: the body of /tokenize. */
cJSON *oai_tokenize_result(const int32_t *ids, size_t n, int max_model_len);
/* {"prompt":text}: the body of /detokenize. */
cJSON *oai_detokenize_result(const char *text);
/* OpenAI's finish_reason string, or NULL for none. */
const char *oai_finish_name(int ms_finish_value);
/* Maps a library status to an HTTP status and error type/code. */
void oai_err_from_status(oai_err *e, ms_status st, const char *message);

#endif
