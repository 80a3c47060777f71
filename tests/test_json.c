/* test_json.c: strict JSON parsing (duplicates, \u0000, UTF-8, depth, trailing data). */
#include <stdlib.h>

#include "base/json.h"
#include "util.h"

static int rejects(const char *s, const char *msg_part)
{
    ms_error e = {0};
    cJSON *j = json_parse_strict(s, strlen(s), "t.json", &e);
    if (j) {
        cJSON_Delete(j);
        return 0;
    }
    return strstr(e.message, msg_part) != NULL && strstr(e.message, "t.json") != NULL;
}

static void t_strict(void)
{
    CHECK(rejects("{\"a\":1,\"a\":2}", "duplicate key"), "duplicate");
    CHECK(rejects("{\"x\":{\"b\":1,\"c\":2,\"b\":3}}", "duplicate key"), "nested duplicate");
    CHECK(rejects("{\"a\":\"x\\u0000y\"}", "\\u0000"), "u0000");
    CHECK(rejects("{\"a\":\"\xff\"}", "invalid UTF-8"), "utf8");
    CHECK(rejects("{\"a\":1} x", "trailing"), "trailing");
    CHECK(rejects("{\"a\":", "invalid JSON"), "truncated");
    char deep[400];
    memset(deep, '[', 200);
    memset(deep + 200, ']', 200);
    CHECK(!json_parse_strict(deep, sizeof deep, "t.json", NULL), "deep nesting accepted");
    ms_error e = {0};
    cJSON *j = json_parse_strict("{\"a\":\"x\\\\u0000\",\"Model\":3} ", 27, "t.json", &e);
    CHECK(j != NULL, "escaped backslash before u0000 must be accepted: %s", e.message);
    CHECK(j && json_get(j, "model") == NULL, "lookup must be case-sensitive");
    cJSON_Delete(j);
}

static void t_getters(void)
{
    ms_error e = {0};
    const char *src = "{\"i\":3,\"f\":1.5,\"b\":true,\"s\":\"x\",\"n\":null}";
    cJSON *j = json_parse_strict(src, strlen(src), "c.json", &e);
    CHECK(j != NULL, "%s", e.message);
    int64_t i = 0;
    CHECK(json_get_int(j, "i", 1, 0, 10, &i, "c.json", &e) == MS_OK && i == 3, "int");
    CHECK(json_get_int(j, "f", 1, 0, 10, &i, "c.json", &e) != MS_OK && strstr(e.message, "\"f\""), "non-integral");
    CHECK(json_get_int(j, "i", 1, 5, 10, &i, "c.json", &e) != MS_OK, "range");
    CHECK(json_get_int(j, "zz", 1, 0, 10, &i, "c.json", &e) != MS_OK && strstr(e.message, "missing"), "required");
    i = 7;
    CHECK(json_get_int(j, "n", 0, 0, 10, &i, "c.json", &e) == MS_OK && i == 7, "null is absent");
    const char *s = NULL;
    CHECK(json_get_string(j, "b", 1, &s, "c.json", &e) != MS_OK, "type");
    int b = 0;
    CHECK(json_get_bool(j, "b", 1, &b, "c.json", &e) == MS_OK && b == 1, "bool");
    CHECK(json_get_opt(j, "i") == json_get(j, "i") && json_get_opt(j, "n") == NULL && json_get_opt(j, "zz") == NULL &&
              json_get(j, "n") != NULL,
          "null or absent is not given");
    CHECK(json_is_integer(json_get(j, "i")) && !json_is_integer(json_get(j, "f")) &&
              !json_is_integer(json_get(j, "s")) && !json_is_integer(NULL),
          "integer");
    cJSON_Delete(j);
}

int main(int argc, char **argv)
{
    static const test_case cases[] = {{"json_strict", t_strict}, {"json_getters", t_getters}};
    return test_main(argc, argv, cases, sizeof cases / sizeof *cases);
}
