/* fuzz_config.c: libFuzzer target for config.json and generation_config.json
 * (config.c). The input is written to a scratch file and given to both
 * config_load and gen_config_load. An accepted config must satisfy the
 * invariants the model code relies on (positive sizes, heads divisible,
 * bounded eos list); an error must carry a message. */
#include <stdint.h>
#include <stdlib.h>

#include "fuzz_util.h"
#include "model/config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char path[256];
    fuzz_write("config.json", data, size, path, sizeof path);
    qwen3_config c;
    ms_error err;
    err.message[0] = 0;
    if (config_load(path, &c, &err) == MS_OK) {
        if (c.hidden_size <= 0 || c.n_layers <= 0 || c.n_heads <= 0 || c.n_kv_heads <= 0 || c.head_dim <= 0 ||
            c.intermediate_size <= 0 || c.vocab_size <= 0)
            abort();
        if (c.n_heads % c.n_kv_heads) abort();
        if (c.n_eos < 0 || c.n_eos > CFG_MAX_EOS) abort();
    } else if (!err.message[0]) {
        abort();
    }
    gen_config g;
    err.message[0] = 0;
    if (gen_config_load(path, &g, &err) == MS_OK) {
        if (g.n_eos < 0 || g.n_eos > CFG_MAX_EOS) abort();
    } else if (!err.message[0]) {
        abort();
    }
    return 0;
}
