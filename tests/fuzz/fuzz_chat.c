/* fuzz_chat.c: libFuzzer target for the chat renderer's JSON inputs: the input
 * is a request object {"messages": [...], "tools": [...],
 * "add_generation_prompt": bool, "enable_thinking": bool} read with
 * chat_json_parse (chat_json.c), turned into messages by chat_conv_from_json
 * and rendered by chat_render (chat.c). Checks the rendered text's untrusted
 * ranges are sorted, disjoint, non-empty and inside the text, and that the
 * text has no NUL before len. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_util.h"
#include "text/chat.h"
#include "text/chat_json.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    ms_error err;
    cJSON *root = chat_json_parse((const char *)data, size, "fuzz", &err);
    if (!root) return 0;
    const cJSON *msgs = cJSON_GetObjectItemCaseSensitive(root, "messages");
    const cJSON *tools = cJSON_GetObjectItemCaseSensitive(root, "tools");
    const cJSON *agp = cJSON_GetObjectItemCaseSensitive(root, "add_generation_prompt");
    const cJSON *think = cJSON_GetObjectItemCaseSensitive(root, "enable_thinking");
    chat_conv conv = {0};
    if (msgs && chat_conv_from_json(msgs, tools, &conv, "fuzz", &err) == MS_OK) {
        chat_out out = {0};
        int et = think ? (cJSON_IsTrue(think) ? 1 : 0) : -1;
        if (chat_render(conv.msgs, conv.n, conv.tools_json, cJSON_IsTrue(agp), et, &out, &err) == MS_OK) {
            if (!out.text || strlen(out.text) != out.len) abort();
            size_t prev = 0;
            for (size_t i = 0; i < out.n_untrusted; i++) {
                size_t b = out.untrusted[2 * i], e = out.untrusted[2 * i + 1];
                if (b >= e || e > out.len || (i && b < prev)) abort();
                prev = e;
            }
        }
        chat_out_free(&out);
    }
    chat_conv_free(&conv);
    cJSON_Delete(root);
    return 0;
}
