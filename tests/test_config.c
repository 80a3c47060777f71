/* test_config.c: config.json in transformers 4.x and 5.x spellings (real
 * Qwen3 files' fields), YaRN defaults, and every rejection of config_load;
 * generation_config.json defaults, eos as int or list, and its rejections. */
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "model/config.h"
#include "util.h"

static char g_dir[64];

static const char *path_of(const char *name, char *buf, size_t cap)
{
    snprintf(buf, cap, "%s/%s", g_dir, name);
    return buf;
}

static void put(const char *name, const char *text)
{
    char p[128];
    FILE *f = fopen(path_of(name, p, sizeof p), "w");
    if (!f) return;
    fputs(text, f);
    fclose(f);
}

/* Qwen3-0.6B's config.json as transformers 4.51 writes it. */
static const char *QWEN3_06B_V4 =
    "{\"architectures\":[\"Qwen3ForCausalLM\"],\"attention_bias\":false,\"attention_dropout\":0.0,"
    "\"bos_token_id\":151643,\"eos_token_id\":151645,\"head_dim\":128,\"hidden_act\":\"silu\","
    "\"hidden_size\":1024,\"initializer_range\":0.02,\"intermediate_size\":3072,"
    "\"max_position_embeddings\":40960,\"max_window_layers\":28,\"model_type\":\"qwen3\","
    "\"num_attention_heads\":16,\"num_hidden_layers\":28,\"num_key_value_heads\":8,\"rms_norm_eps\":1e-06,"
    "\"rope_scaling\":null,\"rope_theta\":1000000,\"sliding_window\":null,\"tie_word_embeddings\":true,"
    "\"torch_dtype\":\"bfloat16\",\"transformers_version\":\"4.51.0\",\"use_cache\":true,"
    "\"use_sliding_window\":false,\"vocab_size\":151936}";

/* The shape of a 5.x file: dtype, rope_parameters, layer_types, no rope_theta. */
static const char *V5 =
    "{\"architectures\":[\"Qwen3ForCausalLM\"],\"attention_bias\":true,\"bos_token_id\":151643,"
    "\"dtype\":\"float32\",\"eos_token_id\":[151645,151643],\"head_dim\":32,\"hidden_act\":\"silu\","
    "\"hidden_size\":64,\"intermediate_size\":128,\"layer_types\":[\"full_attention\",\"full_attention\"],"
    "\"max_position_embeddings\":40960,\"model_type\":\"qwen3\",\"num_attention_heads\":4,"
    "\"num_hidden_layers\":2,\"num_key_value_heads\":null,\"rms_norm_eps\":1e-05,"
    "\"rope_parameters\":{\"rope_theta\":500000.0,\"rope_type\":\"yarn\",\"factor\":4.0,"
    "\"original_max_position_embeddings\":32768},\"tie_word_embeddings\":false,"
    "\"transformers_version\":\"5.0.0\",\"use_sliding_window\":false,\"vocab_size\":1000}";

static void t_v4(void)
{
    put("config.json", QWEN3_06B_V4);
    qwen3_config c;
    ms_error e = {0};
    CHECK(config_load(g_dir, &c, &e) == MS_OK, "%s", e.message);
    CHECK(c.hidden_size == 1024 && c.n_layers == 28 && c.n_heads == 16 && c.n_kv_heads == 8, "dims");
    CHECK(c.head_dim == 128 && c.intermediate_size == 3072 && c.vocab_size == 151936, "dims 2");
    CHECK(c.max_position_embeddings == 40960 && c.rms_norm_eps == 1e-6 && c.rope_theta == 1e6, "rope/eps");
    CHECK(c.tie_word_embeddings == 1 && c.attention_bias == 0 && c.rope_yarn == 0, "flags");
    CHECK(c.dtype == ST_BF16 && c.dtype_given == 1, "dtype");
    CHECK(c.bos_token_id == 151643 && c.n_eos == 1 && c.eos_ids[0] == 151645, "token ids");
    char p[128];
    /* the file path works too */
    CHECK(config_load(path_of("config.json", p, sizeof p), &c, &e) == MS_OK, "%s", e.message);
}

static void t_v5_yarn(void)
{
    put("config.json", V5);
    qwen3_config c;
    ms_error e = {0};
    CHECK(config_load(g_dir, &c, &e) == MS_OK, "%s", e.message);
    CHECK(c.n_kv_heads == 4, "null kv heads -> heads, got %d", c.n_kv_heads);
    CHECK(c.head_dim == 32 && c.dtype == ST_F32 && c.attention_bias == 1 && !c.tie_word_embeddings, "fields");
    CHECK(c.rope_theta == 500000.0, "theta from rope_parameters");
    CHECK(c.rope_yarn == 1 && c.yarn_factor == 4.0 && c.yarn_original_max == 32768, "yarn");
    CHECK(c.yarn_beta_fast == 32 && c.yarn_beta_slow == 1 && c.yarn_truncate == 1, "yarn defaults");
    CHECK(fabs(c.yarn_attention_factor - 1.1386294361119891) < 1e-12, "attention factor %.17g",
          c.yarn_attention_factor);
    CHECK(c.n_eos == 2 && c.eos_ids[0] == 151645 && c.eos_ids[1] == 151643, "eos list");
    /* 4.x yarn in rope_scaling with legacy "type"; given attention_factor; orig max defaulted */
    put("config.json", "{\"model_type\":\"qwen3\",\"hidden_size\":64,\"num_hidden_layers\":1,\"num_attention_heads\":4,"
                       "\"head_dim\":16,\"intermediate_size\":8,\"vocab_size\":10,\"max_position_embeddings\":4096,"
                       "\"rope_theta\":10000,\"rope_scaling\":{\"type\":\"yarn\",\"factor\":2,\"attention_factor\":1.5,"
                       "\"beta_fast\":16,\"truncate\":false}}");
    CHECK(config_load(g_dir, &c, &e) == MS_OK, "%s", e.message);
    CHECK(c.rope_yarn && c.yarn_factor == 2 && c.yarn_original_max == 4096 && c.yarn_attention_factor == 1.5 &&
              c.yarn_beta_fast == 16 && c.yarn_truncate == 0 && c.rope_theta == 10000,
          "4.x yarn fields");
    CHECK(c.dtype_given == 0 && c.tie_word_embeddings == 0 && c.bos_token_id == -1 && c.n_eos == 0, "absent fields");
    /* mscale ratio */
    put("config.json",
        "{\"model_type\":\"qwen3\",\"hidden_size\":64,\"num_hidden_layers\":1,\"num_attention_heads\":4,"
        "\"head_dim\":16,\"intermediate_size\":8,\"vocab_size\":10,\"rope_parameters\":{\"rope_type\":\"yarn\","
        "\"rope_theta\":10000,\"factor\":4,\"mscale\":1,\"mscale_all_dim\":0.5}}");
    CHECK(config_load(g_dir, &c, &e) == MS_OK, "%s", e.message);
    double want = (0.1 * log(4.0) + 1) / (0.05 * log(4.0) + 1);
    CHECK(fabs(c.yarn_attention_factor - want) < 1e-12, "mscale ratio %.17g", c.yarn_attention_factor);
    CHECK(c.max_position_embeddings == 32768 && c.yarn_original_max == 32768, "default max pos");
    /* head_dim absent but hidden/heads = 128: accepted */
    put("config.json",
        "{\"model_type\":\"qwen3\",\"hidden_size\":512,\"num_hidden_layers\":1,\"num_attention_heads\":4,"
        "\"intermediate_size\":8,\"vocab_size\":10,\"rope_theta\":1e6}");
    CHECK(config_load(g_dir, &c, &e) == MS_OK && c.head_dim == 128, "head_dim 512/4: %s", e.message);
}

/* Replaces the first occurrence of from in QWEN3_06B_V4 by to, writes it, loads it. */
static int rejects(const char *from, const char *to, const char *msg)
{
    const char *base = QWEN3_06B_V4;
    const char *at = strstr(base, from);
    if (!at) {
        printf("  pattern %s not found\n", from);
        return 0;
    }
    char buf[4096];
    snprintf(buf, sizeof buf, "%.*s%s%s", (int)(at - base), base, to, at + strlen(from));
    put("config.json", buf);
    qwen3_config c;
    ms_error e = {0};
    ms_status s = config_load(g_dir, &c, &e);
    if (s == MS_OK) {
        printf("  accepted: %s -> %s\n", from, to);
        return 0;
    }
    if (!strstr(e.message, msg) || !strstr(e.message, "config.json")) {
        printf("  message \"%s\" lacks \"%s\"\n", e.message, msg);
        return 0;
    }
    return 1;
}

static void t_rejections(void)
{
    CHECK(rejects("\"model_type\":\"qwen3\"", "\"model_type\":\"qwen3_moe\"",
                  "model_type \"qwen3_moe\" is not supported"),
          "moe");
    CHECK(rejects("\"model_type\":\"qwen3\"", "\"model_type\":\"qwen2\"", "not supported"), "qwen2");
    CHECK(rejects("\"model_type\":\"qwen3\",", "", "\"model_type\" is missing"), "no model_type");
    CHECK(rejects("\"use_sliding_window\":false", "\"use_sliding_window\":true", "use_sliding_window"), "sliding");
    CHECK(rejects("\"rope_scaling\":null", "\"rope_scaling\":{\"rope_type\":\"linear\",\"factor\":2}",
                  "rope_type \"linear\""),
          "linear");
    CHECK(rejects("\"rope_scaling\":null", "\"rope_scaling\":{\"type\":\"dynamic\",\"factor\":2}",
                  "rope_type \"dynamic\""),
          "dynamic");
    CHECK(rejects("\"rope_scaling\":null", "\"rope_scaling\":{\"rope_type\":\"llama3\",\"factor\":2}", "not supported"),
          "llama3");
    CHECK(rejects("\"rope_scaling\":null", "\"rope_scaling\":{\"rope_type\":\"longrope\"}", "not supported"),
          "longrope");
    CHECK(rejects("\"rope_scaling\":null", "\"rope_scaling\":{\"rope_type\":\"yarn\"}", "\"factor\" is missing"),
          "yarn without factor");
    CHECK(rejects("\"rope_scaling\":null", "\"rope_scaling\":{\"rope_type\":\"yarn\",\"factor\":0.5}", "yarn factor"),
          "yarn factor < 1");
    CHECK(rejects("\"rope_scaling\":null", "\"rope_scaling\":[1]", "must be an object"), "rope_scaling array");
    CHECK(rejects("\"rope_theta\":1000000,", "", "no rope_theta"), "missing theta");
    CHECK(rejects("\"rope_theta\":1000000", "\"rope_theta\":-5", "rope_theta"), "negative theta");
    CHECK(rejects("\"rope_theta\":1000000", "\"rope_theta\":\"1e6\"", "finite number"), "string theta");
    CHECK(rejects("\"rms_norm_eps\":1e-06", "\"rms_norm_eps\":0", "rms_norm_eps"), "eps 0");
    CHECK(rejects("\"torch_dtype\":\"bfloat16\"", "\"torch_dtype\":\"float64\"", "not supported"), "float64");
    CHECK(rejects("\"torch_dtype\":\"bfloat16\"", "\"torch_dtype\":\"bfloat16\",\"dtype\":\"float16\"", "disagree"),
          "dtype conflict");
    CHECK(rejects("\"use_cache\":true", "\"use_cache\":true,\"quantization_config\":{\"quant_method\":\"awq\"}",
                  "quantization_config"),
          "quantized");
    CHECK(rejects("\"num_key_value_heads\":8", "\"num_key_value_heads\":6", "not a multiple"), "nh mod nkv");
    CHECK(rejects("\"num_key_value_heads\":8", "\"num_key_value_heads\":32", "not a multiple"), "nkv > nh");
    CHECK(rejects("\"num_key_value_heads\":8", "\"num_key_value_heads\":0", "outside"), "nkv 0");
    CHECK(rejects("\"hidden_size\":1024", "\"hidden_size\":-1024", "outside"), "negative hidden");
    CHECK(rejects("\"hidden_size\":1024", "\"hidden_size\":1024.5", "integer"), "float hidden");
    CHECK(rejects("\"hidden_size\":1024", "\"hidden_size\":\"1024\"", "integer"), "string hidden");
    CHECK(rejects("\"hidden_size\":1024", "\"hidden_size\":1e300", "outside"), "huge hidden");
    CHECK(rejects("\"hidden_size\":1024,", "", "\"hidden_size\" is missing"), "missing hidden");
    CHECK(rejects("\"num_hidden_layers\":28", "\"num_hidden_layers\":100000", "outside"), "layers huge");
    CHECK(rejects("\"num_attention_heads\":16", "\"num_attention_heads\":0", "outside"), "heads 0");
    CHECK(rejects("\"intermediate_size\":3072", "\"intermediate_size\":4294967296", "outside"), "intermediate 2^32");
    CHECK(rejects("\"vocab_size\":151936", "\"vocab_size\":2147483648", "outside"), "vocab 2^31");
    CHECK(rejects("\"max_position_embeddings\":40960", "\"max_position_embeddings\":2147483648", "outside"),
          "ctx 2^31");
    CHECK(rejects("\"head_dim\":128", "\"head_dim\":127", "even"), "odd head_dim");
    CHECK(rejects("\"head_dim\":128", "\"head_dim\":null", "head_dim"), "null head_dim");
    CHECK(rejects("\"head_dim\":128,", "", "head_dim\" is absent"), "absent head_dim, 1024/16 = 64");
    CHECK(rejects("\"hidden_act\":\"silu\"", "\"hidden_act\":\"gelu\"", "hidden_act"), "gelu");
    CHECK(rejects("\"tie_word_embeddings\":true", "\"tie_word_embeddings\":1", "true or false"), "tie as int");
    CHECK(rejects("\"eos_token_id\":151645", "\"eos_token_id\":-1", "outside"), "eos negative");
    CHECK(rejects("\"eos_token_id\":151645", "\"eos_token_id\":[1,2,3,4,5,6,7,8,9]", "more than"), "eos too many");
    CHECK(rejects("\"eos_token_id\":151645", "\"eos_token_id\":[1,\"2\"]", "eos_token_id"), "eos string in list");
    CHECK(rejects("\"eos_token_id\":151645", "\"eos_token_id\":{}", "eos_token_id"), "eos object");
    CHECK(rejects("\"max_window_layers\":28", "\"layer_types\":[\"sliding_attention\"]", "layer_types"), "layer_types");
    CHECK(rejects("\"model_type\":\"qwen3\"", "\"model_type\":\"qwen3\",\"model_type\":\"qwen3\"", "duplicate key"),
          "duplicate key");
    CHECK(rejects("{\"architectures\"", "[{\"architectures\"", "invalid JSON"), "not an object");
    CHECK(rejects("\"rope_scaling\":null", "\"rope_scaling\":null,\"partial_rotary_factor\":0.5",
                  "partial_rotary_factor"),
          "partial rotary");
    qwen3_config c;
    ms_error e = {0};
    char p[128];
    CHECK(config_load(path_of("nope.json", p, sizeof p), &c, &e) == MS_ERR_NOTFOUND && strstr(e.message, "nope.json"),
          "missing file: %s", e.message);
}

static void t_gen(void)
{
    char p[128];
    path_of("generation_config.json", p, sizeof p);
    unlink(p);
    gen_config g;
    ms_error e = {0};
    CHECK(gen_config_load(g_dir, &g, &e) == MS_OK, "missing file: %s", e.message);
    CHECK(g.do_sample == 0 && g.temperature == 1.0 && g.top_k == 50 && g.top_p == 1.0 && g.min_p == 0 &&
              g.repetition_penalty == 1.0 && g.n_eos == 0 && g.max_new_tokens == 0,
          "HF defaults");
    put("generation_config.json",
        "{\"bos_token_id\":151643,\"do_sample\":true,\"eos_token_id\":[151645,151643],\"pad_token_id\":151643,"
        "\"temperature\":0.6,\"top_k\":20,\"top_p\":0.95,\"transformers_version\":\"4.51.0\"}");
    CHECK(gen_config_load(g_dir, &g, &e) == MS_OK, "%s", e.message);
    CHECK(g.do_sample == 1 && g.temperature == 0.6 && g.top_k == 20 && g.top_p == 0.95 && g.min_p == 0, "Qwen3 values");
    CHECK(g.n_eos == 2 && g.eos_ids[0] == 151645 && g.eos_ids[1] == 151643, "eos list");
    put("generation_config.json", "{\"eos_token_id\":151643,\"top_k\":null,\"min_p\":0.05,\"repetition_penalty\":1.1,"
                                  "\"max_new_tokens\":256}");
    CHECK(gen_config_load(p, &g, &e) == MS_OK, "%s", e.message);
    CHECK(g.n_eos == 1 && g.eos_ids[0] == 151643 && g.top_k == 0 && g.min_p == 0.05 && g.repetition_penalty == 1.1 &&
              g.max_new_tokens == 256 && g.do_sample == 0,
          "eos int, top_k null");
    static const char *const bad[][2] = {
        {"{\"temperature\":-1}", "temperature"},
        {"{\"do_sample\":true,\"temperature\":0}", "temperature"},
        {"{\"top_p\":0}", "top_p"},
        {"{\"top_p\":1.5}", "top_p"},
        {"{\"top_k\":-1}", "top_k"},
        {"{\"top_k\":2.5}", "top_k"},
        {"{\"min_p\":2}", "min_p"},
        {"{\"repetition_penalty\":0}", "repetition_penalty"},
        {"{\"do_sample\":\"yes\"}", "do_sample"},
        {"{\"eos_token_id\":\"x\"}", "eos_token_id"},
        {"{\"max_new_tokens\":0}", "max_new_tokens"},
        {"[1]", "not a JSON object"},
        {"{\"top_k\":1,\"top_k\":2}", "duplicate key"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        put("generation_config.json", bad[i][0]);
        ms_status s = gen_config_load(g_dir, &g, &e);
        CHECK(s != MS_OK && strstr(e.message, bad[i][1]) && strstr(e.message, "generation_config.json"), "%s: %s",
              bad[i][0], s ? e.message : "accepted");
    }
    unlink(p);
}

int main(int argc, char **argv)
{
    snprintf(g_dir, sizeof g_dir, "/tmp/ms_test_config_XXXXXX");
    if (!mkdtemp(g_dir)) return 1;
    static const test_case cases[] = {
        {"config_v4", t_v4},
        {"config_v5_yarn", t_v5_yarn},
        {"config_rejections", t_rejections},
        {"gen_config", t_gen},
    };
    int rc = test_main(argc, argv, cases, (int)(sizeof cases / sizeof *cases));
    char p[128];
    unlink(path_of("config.json", p, sizeof p));
    unlink(path_of("generation_config.json", p, sizeof p));
    rmdir(g_dir);
    return rc;
}
