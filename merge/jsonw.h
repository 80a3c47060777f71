/* jsonw.h: writing JSON the way Python's json.dumps(indent=2) lays it out
 * (two-space indent, ", " never at line ends, "key": value, empty containers
 * as [] and {}), keeping the tree's key order, integers printed exactly,
 * UTF-8 kept as is. Used for the patched config.json and
 * generation_config.json and the manifest (the shard index is written by
 * runtime/io/st_shard.c, as transformers writes it). Does not sort keys (build the tree in the order wanted). */
#ifndef MG_JSONW_H
#define MG_JSONW_H

#include <cjson/cJSON.h>

#include "medserve.h"

/* Returns a malloc'd NUL-terminated text ending in "\n", or NULL on OOM. */
char *mg_json_pretty(const cJSON *j);

#endif
