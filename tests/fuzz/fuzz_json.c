/* fuzz_json.c: libFuzzer target for the strict JSON layer: json_parse_strict
 * (json.c) and chat_json_parse (chat_json.c) on the same bytes. Checks:
 * chat_json_parse accepts nothing json_parse_strict refuses; what
 * chat_json_parse accepts dumps (chat_json_dump_literal) to text that parses
 * again and dumps to the same bytes; chat_json_dump never fails on a parsed
 * tree. Typed getters run over the members of a top-level object. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base/json.h"
#include "fuzz_util.h"
#include "text/chat_json.h"

/* Runs every typed getter on each member of obj. */
static void poke_getters(const cJSON *obj)
{
    ms_error err;
    for (const cJSON *c = obj->child; c; c = c->next) {
        if (!c->string) abort();
        int64_t i;
        double d;
        int b;
        const char *s;
        (void)json_get_int(obj, c->string, 1, INT64_MIN, INT64_MAX, &i, "fuzz", &err);
        (void)json_get_int(obj, c->string, 0, -5, 5, &i, "fuzz", &err);
        (void)json_get_double(obj, c->string, 1, &d, "fuzz", &err);
        (void)json_get_bool(obj, c->string, 1, &b, "fuzz", &err);
        (void)json_get_string(obj, c->string, 1, &s, "fuzz", &err);
        if (json_get(obj, c->string) == NULL) abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *text = (const char *)data;
    ms_error err;
    cJSON *a = json_parse_strict(text, size, "fuzz", &err);
    if (a && cJSON_IsObject(a)) poke_getters(a);
    cJSON *b = chat_json_parse(text, size, "fuzz", &err);
    if (b && !a) abort(); /* the stricter parser took what the strict one refused */
    if (b) {
        strbuf d1 = {0}, d2 = {0}, py = {0};
        if (chat_json_dump_literal(b, &d1, &err) != MS_OK) abort();
        cJSON *c = chat_json_parse(d1.p ? d1.p : "", d1.n, "dump", &err);
        if (!c) abort(); /* dump_literal promises JSON that reads back */
        if (chat_json_dump_literal(c, &d2, &err) != MS_OK) abort();
        if (d1.n != d2.n || memcmp(d1.p, d2.p, d1.n)) abort();
        if (chat_json_dump(b, &py, &err) != MS_OK) abort();
        cJSON_Delete(c);
        sb_free(&d1);
        sb_free(&d2);
        sb_free(&py);
    }
    cJSON_Delete(a);
    cJSON_Delete(b);
    return 0;
}
