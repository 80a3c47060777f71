/* test_server_req.c: OpenAI request validation (server/oai_req.c): what is
 * accepted and how, and that every bad field is a 400 (404 for the model)
 * naming its param, never silently ignored (docs/threats.md B1, D1-D5). */
#include <stdlib.h>

#include "base/json.h"
#include "oai_req.h"
#include "util.h"

static const oai_limits LIM = {"m", 4, 1000};

/* Parses chat JSON text; returns the parse result and fills e. */
static int chat(const char *src, oai_chat *c, oai_err *e)
{
    ms_error je;
    cJSON *root = json_parse_strict(src, strlen(src), "body", &je);
    if (!root) {
        snprintf(e->message, sizeof e->message, "json: %.400s", je.message);
        e->http = -1;
        memset(c, 0, sizeof *c);
        return -2;
    }
    int rc = oai_parse_chat(root, &LIM, c, e);
    cJSON_Delete(root);
    return rc;
}

/* 1 when chat src is rejected with http status and param. */
static int chat_rejects(const char *src, int http, const char *param, const char *code)
{
    oai_chat c;
    oai_err e;
    memset(&e, 0, sizeof e);
    int rc = chat(src, &c, &e);
    oai_chat_free(&c);
    int ok = rc == -1 && e.http == http && !strcmp(e.param, param) && (!code || !strcmp(e.code, code));
    if (!ok) printf("  got rc %d http %d param '%s' code '%s': %s\n", rc, e.http, e.param, e.code, e.message);
    return ok;
}

/* 1 when chat src parses (prints the error otherwise). */
static int chat_accepts(const char *src)
{
    oai_chat c;
    oai_err e;
    memset(&e, 0, sizeof e);
    int rc = chat(src, &c, &e);
    oai_chat_free(&c);
    if (rc) printf("  rejected: %s (param %s)\n", e.message, e.param);
    return rc == 0;
}

#define MSGS "\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]"

/* Every supported field of a full chat request lands in the struct. */
static void t_chat_fields(void)
{
    /* strings in the parsed struct point into the tree: keep it alive */
    const char *src = "{\"model\":\"m\",\"messages\":[{\"role\":\"developer\",\"content\":\"sys\"},"
                      "{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"a\"},{\"type\":\"text\","
                      "\"text\":\"b\"}]},{\"role\":\"assistant\",\"content\":null,\"tool_calls\":[{\"id\":\"c1\","
                      "\"type\":\"function\",\"function\":{\"name\":\"f\",\"arguments\":\"{}\"}}]},"
                      "{\"role\":\"tool\",\"content\":\"r\",\"tool_call_id\":\"c1\"}],"
                      "\"temperature\":0.5,\"top_p\":0.9,\"top_k\":-1,\"min_p\":0.1,\"repetition_penalty\":1.1,"
                      "\"presence_penalty\":-2,\"frequency_penalty\":2,\"n\":3,\"stop\":[\"x\",\"yy\"],"
                      "\"stream\":true,\"stream_options\":{\"include_usage\":true},\"seed\":-5,"
                      "\"logit_bias\":{\"5\":-100,\"999\":2.5},\"logprobs\":true,\"top_logprobs\":20,"
                      "\"user\":\"u\",\"max_completion_tokens\":7,\"chat_template_kwargs\":{\"enable_thinking\":false},"
                      "\"response_format\":{\"type\":\"text\"},\"tools\":null}";
    ms_error je;
    cJSON *root = json_parse_strict(src, strlen(src), "body", &je);
    CHECK(root != NULL, "%s", je.message);
    oai_chat c;
    oai_err e;
    int rc = oai_parse_chat(root, &LIM, &c, &e);
    CHECK(rc == 0, "%s", e.message);
    if (rc == 0) {
        CHECK(c.n_msgs == 4, "n_msgs %zu", c.n_msgs);
        CHECK(!strcmp(c.msgs[0].role, "system"), "developer maps to system: %s", c.msgs[0].role);
        CHECK(!strcmp(c.msgs[1].content, "a\nb"), "parts joined with newline: '%s'", c.msgs[1].content);
        CHECK(!strcmp(c.msgs[2].content, "") && c.msgs[2].tool_calls_json &&
                  strstr(c.msgs[2].tool_calls_json, "\"name\":\"f\""),
              "assistant tool_calls kept as JSON");
        CHECK(!strcmp(c.msgs[3].role, "tool"), "tool role");
        CHECK(c.g.has_temperature && c.g.temperature == 0.5, "temperature");
        CHECK(c.g.has_top_k && c.g.top_k == 0, "top_k -1 means off");
        CHECK(c.g.n == 3 && c.g.n_stop == 2 && !strcmp(c.g.stop[1], "yy"), "n/stop");
        CHECK(c.g.stream && c.g.include_usage, "stream");
        CHECK(c.g.has_seed && c.g.seed == (uint64_t)(int64_t)-5, "seed");
        CHECK(c.g.n_bias == 2 && c.g.bias_ids[1] == 999 && c.g.bias_values[1] == 2.5f, "bias");
        CHECK(c.g.logprobs && c.g.top_logprobs == 20, "logprobs");
        CHECK(c.g.has_max_tokens && c.g.max_tokens == 7, "max_completion_tokens");
        CHECK(c.g.enable_thinking == 0, "enable_thinking");
        CHECK(c.g.presence_penalty == -2 && c.g.frequency_penalty == 2, "penalties");
    }
    oai_chat_free(&c);
    cJSON_Delete(root);
    /* defaults */
    root = json_parse_strict("{\"model\":\"m\"," MSGS "}", strlen("{\"model\":\"m\"," MSGS "}"), "body", &je);
    rc = oai_parse_chat(root, &LIM, &c, &e);
    CHECK(rc == 0 && c.g.n == 1 && !c.g.has_temperature && !c.g.has_max_tokens && !c.g.stream &&
              c.g.enable_thinking == -1 && !c.g.has_seed,
          "defaults");
    oai_chat_free(&c);
    cJSON_Delete(root);
}

/* Every numeric field against the D1 bad values. */
static void t_numeric_table(void)
{
    static const struct {
        const char *field;
        const char *ok_values[4]; /* accepted */
    } fields[] = {
        {"temperature", {"0", "1.5", "2", NULL}},
        {"top_p", {"1", "0.5", NULL}},
        {"top_k", {"0", "-1", "40", NULL}},
        {"min_p", {"0", "1", NULL}},
        {"repetition_penalty", {"1.5", "1", NULL}},
        {"presence_penalty", {"0", "-1", "1.5", NULL}},
        {"frequency_penalty", {"0", "-1", "1.5", NULL}},
        {"n", {"1", "4", NULL}},
        {"max_tokens", {"1", "100", NULL}},
        {"max_completion_tokens", {"1", NULL}},
        {"seed", {"0", "-1", "123456789", NULL}},
        {"top_logprobs", {NULL}}, /* needs logprobs: checked below */
    };
    /* the documented ranges decide which of the bad values pass */
    static const char *const bad[] = {"-1", "0", "1.5", "1e300", "\"10\"", "true", "[]", "{}"};
    static const struct {
        const char *field;
        int accepts[8]; /* for each of bad[] */
    } expect[] = {
        {"temperature", {0, 1, 1, 0, 0, 0, 0, 0}},
        {"top_p", {0, 0, 0, 0, 0, 0, 0, 0}},
        {"top_k", {1, 1, 0, 0, 0, 0, 0, 0}},
        {"min_p", {0, 1, 0, 0, 0, 0, 0, 0}},
        {"repetition_penalty", {0, 0, 1, 0, 0, 0, 0, 0}},
        {"presence_penalty", {1, 1, 1, 0, 0, 0, 0, 0}},
        {"frequency_penalty", {1, 1, 1, 0, 0, 0, 0, 0}},
        {"n", {0, 0, 0, 0, 0, 0, 0, 0}},
        {"max_tokens", {0, 0, 0, 0, 0, 0, 0, 0}},
        {"max_completion_tokens", {0, 0, 0, 0, 0, 0, 0, 0}},
        {"seed", {1, 1, 0, 0, 0, 0, 0, 0}},
    };
    char src[256];
    for (size_t f = 0; f < sizeof expect / sizeof *expect; f++) {
        for (size_t b = 0; b < sizeof bad / sizeof *bad; b++) {
            snprintf(src, sizeof src, "{\"model\":\"m\"," MSGS ",\"%s\":%s}", expect[f].field, bad[b]);
            if (expect[f].accepts[b]) CHECK(chat_accepts(src), "%s=%s should be accepted", expect[f].field, bad[b]);
            else CHECK(chat_rejects(src, 400, expect[f].field, NULL), "%s=%s should be 400", expect[f].field, bad[b]);
        }
        for (int k = 0; k < 4 && fields[f].ok_values[k]; k++) {
            snprintf(src, sizeof src, "{\"model\":\"m\"," MSGS ",\"%s\":%s}", fields[f].field, fields[f].ok_values[k]);
            CHECK(chat_accepts(src), "%s=%s", fields[f].field, fields[f].ok_values[k]);
        }
        /* null means "not given" */
        snprintf(src, sizeof src, "{\"model\":\"m\"," MSGS ",\"%s\":null}", expect[f].field);
        CHECK(chat_accepts(src), "%s=null is absent", expect[f].field);
    }
    CHECK(chat_rejects("{\"model\":\"m\"," MSGS ",\"n\":5}", 400, "n", "invalid_value"), "n over cap");
    CHECK(chat_rejects("{\"model\":\"m\"," MSGS ",\"top_logprobs\":2}", 400, "top_logprobs", NULL),
          "top_logprobs needs logprobs");
    CHECK(chat_rejects("{\"model\":\"m\"," MSGS ",\"logprobs\":true,\"top_logprobs\":21}", 400, "top_logprobs", NULL),
          "top_logprobs > 20");
    CHECK(chat_rejects("{\"model\":\"m\"," MSGS ",\"logprobs\":1}", 400, "logprobs", "invalid_type"),
          "chat logprobs is a boolean");
    CHECK(chat_rejects("{\"model\":\"m\"," MSGS ",\"stream\":\"true\"}", 400, "stream", NULL), "stream string");
    CHECK(chat_rejects("{\"model\":\"m\"," MSGS ",\"max_tokens\":2,\"max_completion_tokens\":3}", 400, "max_tokens",
                       NULL),
          "disagreeing max tokens");
}

/* Unsupported, unknown, malformed and out-of-range fields name their param. */
static void t_chat_rejections(void)
{
    CHECK(chat_rejects("{\"model\":\"m\"," MSGS ",\"tools\":[]}", 400, "tools", "unsupported_parameter"), "tools");
    CHECK(chat_rejects("{\"model\":\"m\"," MSGS ",\"tool_choice\":\"none\"}", 400, "tool_choice",
                       "unsupported_parameter"),
          "tool_choice");
    CHECK(chat_rejects("{\"model\":\"m\"," MSGS ",\"response_format\":{\"type\":\"json_object\"}}", 400,
                       "response_format", "unsupported_parameter"),
          "response_format json");
    CHECK(chat_rejects("{\"model\":\"m\"," MSGS ",\"functions\":[{}]}", 400, "functions", "unsupported_parameter"),
          "functions");
    CHECK(chat_rejects("{\"model\":\"m\"," MSGS ",\"frobnicate\":1}", 400, "frobnicate", "unknown_parameter"),
          "unknown field");
    CHECK(chat_rejects("{\"Model\":\"m\"," MSGS "}", 400, "Model", "unknown_parameter"), "keys are case-sensitive");
    CHECK(chat_rejects("{\"model\":\"other\"," MSGS "}", 404, "model", "model_not_found"), "unknown model");
    CHECK(chat_rejects("{" MSGS "}", 400, "model", "missing_required_parameter"), "missing model");
    CHECK(chat_rejects("{\"model\":\"m\"}", 400, "messages", "missing_required_parameter"), "missing messages");
    CHECK(chat_rejects("{\"model\":\"m\",\"messages\":[]}", 400, "messages", NULL), "empty messages");
    CHECK(chat_rejects("{\"model\":\"m\",\"messages\":[{\"role\":\"robot\",\"content\":\"x\"}]}", 400, "messages[0]",
                       NULL),
          "bad role");
    CHECK(chat_rejects("{\"model\":\"m\",\"messages\":[{\"role\":\"user\"}]}", 400, "messages[0].content", NULL),
          "missing content");
    CHECK(chat_rejects("{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":"
                       "\"image_url\",\"image_url\":{\"url\":\"x\"}}]}]}",
                       400, "messages[0].content[0]", "unsupported_parameter"),
          "image part");
    CHECK(chat_rejects("{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\",\"name\":"
                       "\"bob\"}]}",
                       400, "messages[0].name", "unknown_parameter"),
          "message name");
    CHECK(chat_rejects("{\"model\":\"m\"," MSGS ",\"stop\":[\"a\",\"b\",\"c\",\"d\",\"e\"]}", 400, "stop", NULL),
          "5 stops");
    CHECK(chat_rejects("{\"model\":\"m\"," MSGS ",\"stop\":\"\"}", 400, "stop", NULL), "empty stop");
    CHECK(chat_rejects("{\"model\":\"m\"," MSGS ",\"stop\":[1]}", 400, "stop", NULL), "numeric stop");
    CHECK(chat_rejects("{\"model\":\"m\"," MSGS ",\"stream_options\":{\"include_usage\":true}}", 400, "stream_options",
                       NULL),
          "stream_options without stream");
    CHECK(chat_rejects("{\"model\":\"m\"," MSGS ",\"stream\":true,\"stream_options\":{\"x\":1}}", 400,
                       "stream_options.x", "unknown_parameter"),
          "unknown stream option");
    CHECK(chat_rejects("{\"model\":\"m\"," MSGS ",\"chat_template_kwargs\":{\"add_vision_id\":true}}", 400,
                       "chat_template_kwargs.add_vision_id", "unknown_parameter"),
          "template kwargs other than enable_thinking (D5)");
    CHECK(chat_rejects("{\"model\":\"m\"," MSGS ",\"chat_template_kwargs\":{\"enable_thinking\":1}}", 400,
                       "chat_template_kwargs.enable_thinking", NULL),
          "enable_thinking type");
    CHECK(chat_rejects("{\"model\":\"m\"," MSGS ",\"logit_bias\":{\"1000\":1}}", 400, "logit_bias", NULL),
          "bias id == vocab");
    CHECK(chat_rejects("{\"model\":\"m\"," MSGS ",\"logit_bias\":{\"-1\":1}}", 400, "logit_bias", NULL), "bias id -1");
    CHECK(chat_rejects("{\"model\":\"m\"," MSGS ",\"logit_bias\":{\"01\":1}}", 400, "logit_bias", NULL),
          "bias id with leading zero");
    CHECK(chat_rejects("{\"model\":\"m\"," MSGS ",\"logit_bias\":{\"1\":101}}", 400, "logit_bias", NULL), "bias value");
    CHECK(chat_rejects("[1]", 400, "", NULL), "array body");
}

/* Parses a completion body. */
static int completion(const char *src, oai_completion *c, oai_err *e, cJSON **root)
{
    ms_error je;
    *root = json_parse_strict(src, strlen(src), "body", &je);
    memset(c, 0, sizeof *c);
    if (!*root) return -2;
    return oai_parse_completion(*root, &LIM, c, e);
}

/* Prompt forms, id ranges and completion-only fields. */
static void t_completions(void)
{
    oai_completion c;
    oai_err e;
    cJSON *root;
    CHECK(completion("{\"model\":\"m\",\"prompt\":\"abc\",\"echo\":true,\"logprobs\":3}", &c, &e, &root) == -1 &&
              !strcmp(e.param, "echo"),
          "echo with logprobs refused");
    oai_completion_free(&c);
    cJSON_Delete(root);
    CHECK(completion("{\"model\":\"m\",\"prompt\":\"abc\",\"logprobs\":3}", &c, &e, &root) == 0 && c.n_prompts == 1 &&
              c.text_lens[0] == 3 && c.g.logprobs && c.g.top_logprobs == 3,
          "string prompt");
    oai_completion_free(&c);
    cJSON_Delete(root);
    CHECK(completion("{\"model\":\"m\",\"prompt\":[\"a\",\"bc\"]}", &c, &e, &root) == 0 && c.n_prompts == 2 &&
              !strcmp(c.texts[1], "bc"),
          "string list");
    oai_completion_free(&c);
    cJSON_Delete(root);
    CHECK(completion("{\"model\":\"m\",\"prompt\":[1,2,999]}", &c, &e, &root) == 0 && c.n_prompts == 1 &&
              c.n_ids[0] == 3 && c.ids[0][2] == 999,
          "id list");
    oai_completion_free(&c);
    cJSON_Delete(root);
    CHECK(completion("{\"model\":\"m\",\"prompt\":[[1],[2,3]]}", &c, &e, &root) == 0 && c.n_prompts == 2 &&
              c.n_ids[1] == 2,
          "list of id lists");
    oai_completion_free(&c);
    cJSON_Delete(root);
    static const char *const bad_ids[] = {"[-1]",        "[1000]", "[2147483648]", "[1.5]", "[\"a\",1]",
                                          "[[1],\"a\"]", "[[]]",   "[]",           "7",     "{}"};
    for (size_t i = 0; i < sizeof bad_ids / sizeof *bad_ids; i++) {
        char src[128];
        snprintf(src, sizeof src, "{\"model\":\"m\",\"prompt\":%s}", bad_ids[i]);
        int rc = completion(src, &c, &e, &root);
        CHECK(rc == -1 && e.http == 400 && !strncmp(e.param, "prompt", 6), "prompt %s: rc %d %s", bad_ids[i], rc,
              e.message);
        oai_completion_free(&c);
        cJSON_Delete(root);
    }
    CHECK(completion("{\"model\":\"m\",\"prompt\":\"a\",\"suffix\":\"x\"}", &c, &e, &root) == -1 &&
              !strcmp(e.code, "unsupported_parameter"),
          "suffix");
    oai_completion_free(&c);
    cJSON_Delete(root);
    CHECK(completion("{\"model\":\"m\",\"prompt\":\"a\",\"logprobs\":21}", &c, &e, &root) == -1, "logprobs 21");
    oai_completion_free(&c);
    cJSON_Delete(root);
    CHECK(completion("{\"model\":\"m\",\"prompt\":\"a\",\"messages\":[]}", &c, &e, &root) == -1 &&
              !strcmp(e.code, "unknown_parameter"),
          "messages on completions");
    oai_completion_free(&c);
    cJSON_Delete(root);
}

/* /tokenize and /detokenize bodies. */
static void t_tokenize(void)
{
    ms_error je;
    oai_err e;
    const char *s1 = "{\"prompt\":\"hello\"}";
    cJSON *root = json_parse_strict(s1, strlen(s1), "b", &je);
    oai_tokenize t;
    CHECK(oai_parse_tokenize(root, &LIM, &t, &e) == 0 && t.prompt && t.prompt_len == 5, "prompt");
    oai_tokenize_free(&t);
    cJSON_Delete(root);
    const char *s2 = "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"add_generation_prompt\":false,"
                     "\"chat_template_kwargs\":{\"enable_thinking\":true}}";
    root = json_parse_strict(s2, strlen(s2), "b", &je);
    CHECK(oai_parse_tokenize(root, &LIM, &t, &e) == 0 && !t.prompt && t.chat.n_msgs == 1 &&
              t.add_generation_prompt == 0 && t.chat.g.enable_thinking == 1,
          "messages: %s", e.message);
    oai_tokenize_free(&t);
    cJSON_Delete(root);
    const char *s3 = "{\"prompt\":\"a\",\"messages\":[]}";
    root = json_parse_strict(s3, strlen(s3), "b", &je);
    CHECK(oai_parse_tokenize(root, &LIM, &t, &e) == -1, "both prompt and messages");
    oai_tokenize_free(&t);
    cJSON_Delete(root);
    int32_t *ids;
    size_t n;
    const char *s4 = "{\"tokens\":[1,2,3],\"model\":\"m\"}";
    root = json_parse_strict(s4, strlen(s4), "b", &je);
    CHECK(oai_parse_detokenize(root, &LIM, &ids, &n, &e) == 0 && n == 3 && ids[2] == 3, "detokenize");
    free(ids);
    cJSON_Delete(root);
    const char *s5 = "{\"tokens\":[1,-1]}";
    root = json_parse_strict(s5, strlen(s5), "b", &je);
    CHECK(oai_parse_detokenize(root, &LIM, &ids, &n, &e) == -1 && !strcmp(e.param, "tokens"), "detokenize -1");
    free(ids);
    cJSON_Delete(root);
    const char *s6 = "{\"tokens\":[1],\"model\":\"x\"}";
    root = json_parse_strict(s6, strlen(s6), "b", &je);
    CHECK(oai_parse_detokenize(root, &LIM, &ids, &n, &e) == -1 && e.http == 404, "detokenize model");
    free(ids);
    cJSON_Delete(root);
}

int main(int argc, char **argv)
{
    static const test_case cases[] = {
        {"api_req_chat_fields", t_chat_fields},
        {"api_req_numeric_table", t_numeric_table},
        {"api_req_chat_rejections", t_chat_rejections},
        {"api_req_completions", t_completions},
        {"api_req_tokenize", t_tokenize},
    };
    return test_main(argc, argv, cases, sizeof cases / sizeof *cases);
}
