/* chat_json.h: the JSON pieces the chat template needs beyond json.h.
 * A strict parse that also keeps every number's literal text (cJSON keeps
 * only a double, so 1 and 1.0 would look alike); and a writer, into a strbuf,
 * that reproduces Python json.dumps(ensure_ascii=False) with the default
 * ", " / ": " separators, i.e. the template's `tojson` filter. It does not
 * parse JSON itself: json_parse_strict (json.h) does, with all its checks. */
#ifndef MS_CHAT_JSON_H
#define MS_CHAT_JSON_H

#include <stddef.h>

#include <cjson/cJSON.h>

#include "base/strbuf.h"
#include "medserve.h"

/* json_parse_strict plus: every number literal must follow the JSON grammar
 * exactly (cJSON also takes 01, 1. and -.5), and each number node keeps its
 * literal in valuestring (freed by cJSON_Delete; valuedouble is unchanged).
 * what names the source in errors. */
cJSON *chat_json_parse(const char *text, size_t len, const char *what, ms_error *err);

/* Appends Python json.dumps(v, ensure_ascii=False) of v. Numbers use their
 * kept literal: integers print their digits ("-0" as "0"), others print
 * Python's float repr of the parsed double (1.0, 1e-05, 1e+16, Infinity).
 * A number without a literal (built in code) prints as an integer when it is
 * integral and below 2^53 in magnitude, else as a float. */
ms_status chat_json_dump(const cJSON *v, strbuf *b, ms_error *err);

/* Like chat_json_dump, but numbers keep their literal text exactly, so the
 * output is valid JSON that chat_json_parse reads back to the same values
 * (1e400 stays 1e400 where json.dumps would write Infinity). For passing
 * tools and tool calls on to chat_render. */
ms_status chat_json_dump_literal(const cJSON *v, strbuf *b, ms_error *err);

/* Python repr() of a double into out (at least 32 bytes). */
void chat_json_float_repr(double x, char *out);

#endif
