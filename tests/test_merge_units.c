/* test_merge_units.c: the pieces of lora-merge on their own.
 * - kernels: the generic / AVX2 / AVX-512 builds give identical bits for
 *   conversions and for the LoRA row kernel (whose generic build is fmaf
 *   from libm); the conversion rule itself is tested in test_half.c and the
 *   tables against it in test_merge_half.c;
 * - adapter_config.json: rank/alpha pattern priority and anchoring, rsLoRA
 *   scale, target selection (list, regex, all-linear, exclude, layers), and
 *   each refused field with its message;
 * - adapter key classification: every PEFT key form, the adapter-name
 *   variant, and the malformed names it must refuse;
 * - DoRA zero norm and non-finite results in the executor. */
#include <math.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "acfg.h"
#include "akeys.h"
#include "apply.h"
#include "base/err.h"
#include "fsio.h"
#include "kernel.h"
#include "util.h"

/* ---- kernels ---------------------------------------------------------- */

/* Bits of a float. */
static uint32_t fbits(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

/* xorshift random floats in [-1, 1) with varied exponents. */
static float rndf(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    float m = (float)((*s >> 40) & 0xffffff) / 16777216.0f * 2 - 1;
    return ldexpf(m, (int)((*s >> 20) % 12) - 6);
}

static void t_variants(void)
{
    const mg_kernels *g = mg_kernels_named("generic");
    const char *names[2] = {"avx2", "avx512"};
    CHECK(g != NULL, "generic kernels");
    CHECK(mg_kernels_get() != NULL, "a kernel table");
    uint64_t seed = 0x1234567;
    size_t N = 4099;
    float *c = malloc(64 * sizeof(float)), *M = malloc(64 * N * sizeof(float));
    float *y0 = malloc(N * sizeof(float)), *y1 = malloc(N * sizeof(float));
    uint16_t *h0 = malloc(65536 * 2), *h1 = malloc(65536 * 2), *all = malloc(65536 * 2);
    float *wide0 = malloc(65536 * 4), *wide1 = malloc(65536 * 4);
    for (uint32_t i = 0; i < 65536; i++) all[i] = (uint16_t)i;
    for (size_t i = 0; i < 64; i++) c[i] = rndf(&seed);
    for (size_t i = 0; i < 64 * N; i++) M[i] = rndf(&seed);
    int tested = 0;
    for (int v = 0; v < 2; v++) {
        const mg_kernels *k = mg_kernels_named(names[v]);
        if (!k) {
            printf("  %s kernels: not supported by this CPU, skipped\n", names[v]);
            continue;
        }
        tested++;
        static const int ranks[] = {1, 2, 7, 16, 33, 64};
        static const size_t widths[] = {1, 7, 16, 513, 4099};
        for (size_t ri = 0; ri < 6; ri++)
            for (size_t wi = 0; wi < 5; wi++) {
                size_t n = widths[wi];
                g->lora_row(y0, c, M, N, ranks[ri], n, 0.37f);
                k->lora_row(y1, c, M, N, ranks[ri], n, 0.37f);
                CHECK(!memcmp(y0, y1, n * 4), "%s lora_row r=%d n=%zu differs from generic", names[v], ranks[ri], n);
            }
        g->bf16_to_f32(wide0, all, 65536);
        k->bf16_to_f32(wide1, all, 65536);
        CHECK(!memcmp(wide0, wide1, 65536 * 4), "%s bf16_to_f32", names[v]);
        g->f16_to_f32(wide0, all, 65536);
        k->f16_to_f32(wide1, all, 65536);
        CHECK(!memcmp(wide0, wide1, 65536 * 4), "%s f16_to_f32", names[v]);
        for (size_t i = 0; i < 65536; i++) wide0[i] = rndf(&seed) * 70000.0f;
        wide0[0] = NAN, wide0[1] = INFINITY, wide0[2] = 1e-30f, wide0[3] = -0.0f;
        g->f32_to_bf16(h0, wide0, 65536);
        k->f32_to_bf16(h1, wide0, 65536);
        CHECK(!memcmp(h0, h1, 65536 * 2), "%s f32_to_bf16", names[v]);
        g->f32_to_f16(h0, wide0, 65536);
        k->f32_to_f16(h1, wide0, 65536);
        CHECK(!memcmp(h0, h1, 65536 * 2), "%s f32_to_f16", names[v]);
    }
    /* The generic row kernel is the fmaf chain by definition. */
    g->lora_row(y0, c, M, N, 5, 9, 1.5f);
    for (size_t j = 0; j < 9; j++) {
        float acc = 0;
        for (int kk = 0; kk < 5; kk++) acc = fmaf(c[kk], M[kk * N + j], acc);
        CHECK(fbits(acc * 1.5f) == fbits(y0[j]), "generic row element %zu", j);
    }
    printf("  %d SIMD kernel tables compared with the generic one\n", tested);
    free(c), free(M), free(y0), free(y1), free(h0), free(h1), free(all), free(wide0), free(wide1);
}

/* ---- adapter_config.json ---------------------------------------------- */

static char g_dir[256];

/* Writes g_dir/adapter_config.json from a JSON text. */
static void put_config(const char *json)
{
    char p[400];
    snprintf(p, sizeof p, "%s/adapter_config.json", g_dir);
    FILE *f = fopen(p, "w");
    if (f) {
        fputs(json, f);
        fclose(f);
    }
}

/* Loads the config written by put_config. */
static const mg_acfg *load_cfg(const char *json, ms_error *e)
{
    put_config(json);
    const mg_acfg *c = NULL;
    ms_clearerr(e);
    mg_acfg_load(g_dir, &c, NULL, e);
    return c;
}

static void t_acfg_patterns(void)
{
    ms_error e;
    const mg_acfg *c = load_cfg("{\"peft_type\":\"LORA\",\"r\":8,\"lora_alpha\":16,"
                                "\"rank_pattern\":{\"layers.1.mlp.down_proj\":2,\"down_proj\":6,\"q\":3},"
                                "\"alpha_pattern\":{\"layers\\\\.0\\\\..*v_proj\":3.5,\"v_proj\":32}}",
                                &e);
    CHECK(c != NULL, "load: %s", e.message);
    if (!c) return;
    int r;
    double a, s;
    s = mg_acfg_module(c, "model.layers.1.mlp.down_proj", &r, &a);
    CHECK(r == 2 && a == 16 && s == 8, "first matching key wins: r=%d a=%g s=%g", r, a, s);
    s = mg_acfg_module(c, "model.layers.0.mlp.down_proj", &r, &a);
    CHECK(r == 6 && fabs(s - 16.0 / 6) < 1e-15, "second key: r=%d", r);
    mg_acfg_module(c, "model.layers.0.self_attn.q_proj", &r, &a);
    CHECK(r == 8, "\"q\" must not match q_proj (end-anchored, whole segment): r=%d", r);
    mg_acfg_module(c, "model.layers.0.self_attn.v_proj", &r, &a);
    CHECK(a == 3.5, "alpha regex: %g", a);
    mg_acfg_module(c, "model.layers.1.self_attn.v_proj", &r, &a);
    CHECK(a == 32, "alpha suffix: %g", a);
    mg_acfg_module(c, "model.layers.1.self_attn.v_projx", &r, &a);
    CHECK(a == 16, "no match -> default alpha: %g", a);
    mg_acfg_free(c);
    c = load_cfg("{\"peft_type\":\"LORA\",\"r\":16,\"lora_alpha\":8,\"use_rslora\":true}", &e);
    CHECK(c && mg_acfg_module(c, "x", NULL, NULL) == 8.0 / 4.0, "rslora scale alpha/sqrt(r)");
    mg_acfg_free(c);
    c = load_cfg("{\"peft_type\":\"LORA\"}", &e);
    CHECK(c && mg_acfg_module(c, "x", &r, &a) == 1.0 && r == 8 && a == 8, "PEFT defaults r=8 alpha=8");
    mg_acfg_free(c);
}

static void t_acfg_targets(void)
{
    ms_error e;
    const mg_acfg *c = load_cfg("{\"peft_type\":\"LORA\",\"target_modules\":[\"q_proj\",\"mlp.up_proj\"],"
                                "\"layers_to_transform\":[1],\"modules_to_save\":[\"lm_head\"]}",
                                &e);
    CHECK(c != NULL, "load: %s", e.message);
    if (c) {
        CHECK(mg_acfg_targets(c, "model.layers.1.self_attn.q_proj", 1), "list suffix + layer 1");
        CHECK(!mg_acfg_targets(c, "model.layers.0.self_attn.q_proj", 1), "layer 0 excluded");
        CHECK(!mg_acfg_targets(c, "model.layers.1.self_attn.xq_proj", 1), "suffix must be a whole segment");
        CHECK(mg_acfg_targets(c, "model.layers.1.mlp.up_proj", 1), "dotted suffix");
        CHECK(!mg_acfg_targets(c, "lm_head", 0), "modules_to_save never targeted");
        CHECK(mg_acfg_saves(c, "lm_head"), "saves lm_head");
        mg_acfg_free(c);
    }
    c = load_cfg("{\"peft_type\":\"LORA\",\"target_modules\":\".*\\\\.(q|v)_proj\",\"layers_to_transform\":[0]}", &e);
    CHECK(c != NULL, "load: %s", e.message);
    if (c) {
        CHECK(mg_acfg_targets(c, "model.layers.1.self_attn.v_proj", 1), "regex fullmatch (layers ignored)");
        CHECK(!mg_acfg_targets(c, "model.layers.1.self_attn.v_proj.x", 1), "regex must match the whole name");
        CHECK(!mg_acfg_targets(c, "model.layers.1.self_attn.k_proj", 1), "regex k_proj");
        mg_acfg_free(c);
    }
    c = load_cfg("{\"peft_type\":\"LORA\",\"target_modules\":\"all-linear\",\"exclude_modules\":[\"down_proj\"]}", &e);
    CHECK(c != NULL, "load: %s", e.message);
    if (c) {
        CHECK(mg_acfg_targets(c, "model.layers.3.mlp.gate_proj", 1), "all-linear");
        CHECK(!mg_acfg_targets(c, "lm_head", 0), "all-linear excludes the head");
        CHECK(!mg_acfg_targets(c, "model.layers.3.mlp.down_proj", 1), "exclude_modules");
        mg_acfg_free(c);
    }
}

static void t_acfg_refusals(void)
{
    static const struct {
        const char *json, *msg;
        ms_status st;
    } v[] = {
        {"{\"peft_type\":\"LOHA\"}", "only \"LORA\"", MS_ERR_UNSUPPORTED},
        {"{\"r\":8}", "\"peft_type\" is missing", MS_ERR_FORMAT},
        {"{\"peft_type\":\"LORA\",\"task_type\":\"SEQ_CLS\"}", "score head", MS_ERR_UNSUPPORTED},
        {"{\"peft_type\":\"LORA\",\"init_lora_weights\":\"pissa_niter_4\"}", "changed the base", MS_ERR_UNSUPPORTED},
        {"{\"peft_type\":\"LORA\",\"init_lora_weights\":\"olora\"}", "changed the base", MS_ERR_UNSUPPORTED},
        {"{\"peft_type\":\"LORA\",\"init_lora_weights\":\"corda\"}", "changed the base", MS_ERR_UNSUPPORTED},
        {"{\"peft_type\":\"LORA\",\"init_lora_weights\":\"loftq\"}", "changed the base", MS_ERR_UNSUPPORTED},
        {"{\"peft_type\":\"LORA\",\"init_lora_weights\":\"lora_ga\"}", "changed the base", MS_ERR_UNSUPPORTED},
        {"{\"peft_type\":\"LORA\",\"init_lora_weights\":\"magic\"}", "unknown value", MS_ERR_UNSUPPORTED},
        {"{\"peft_type\":\"LORA\",\"loftq_config\":{\"loftq_bits\":4}}", "LoftQ", MS_ERR_UNSUPPORTED},
        {"{\"peft_type\":\"LORA\",\"bias\":\"all\"}", "\"bias\" is \"all\"", MS_ERR_UNSUPPORTED},
        {"{\"peft_type\":\"LORA\",\"lora_bias\":true}", "lora_bias", MS_ERR_UNSUPPORTED},
        {"{\"peft_type\":\"LORA\",\"use_qalora\":true}", "QA-LoRA", MS_ERR_UNSUPPORTED},
        {"{\"peft_type\":\"LORA\",\"layer_replication\":[[0,2]]}", "layer_replication", MS_ERR_UNSUPPORTED},
        {"{\"peft_type\":\"LORA\",\"alora_invocation_tokens\":[1]}", "alora_invocation_tokens", MS_ERR_UNSUPPORTED},
        {"{\"peft_type\":\"LORA\",\"target_parameters\":[\"x\"]}", "target_parameters", MS_ERR_UNSUPPORTED},
        {"{\"peft_type\":\"LORA\",\"megatron_config\":{\"a\":1}}", "megatron_config", MS_ERR_UNSUPPORTED},
        {"{\"peft_type\":\"LORA\",\"ensure_weight_tying\":true}", "ensure_weight_tying", MS_ERR_UNSUPPORTED},
        {"{\"peft_type\":\"LORA\",\"brand_new_feature\":{\"x\":1}}", "unknown field", MS_ERR_UNSUPPORTED},
        {"{\"peft_type\":\"LORA\",\"trainable_token_indices\":{\"embed_tokens\":[1]}}", "list of token ids",
         MS_ERR_UNSUPPORTED},
        {"{\"peft_type\":\"LORA\",\"r\":0}", "\"r\"", MS_ERR_FORMAT},
        {"{\"peft_type\":\"LORA\",\"r\":4.5}", "\"r\"", MS_ERR_FORMAT},
        {"{\"peft_type\":\"LORA\",\"rank_pattern\":{\"(\":4}}", "not a valid regex", MS_ERR_FORMAT},
        {"{\"peft_type\":\"LORA\",\"rank_pattern\":{\"q\":0}}", "rank", MS_ERR_FORMAT},
        {"{\"peft_type\":\"LORA\",\"lora_alpha\":\"16\"}", "lora_alpha", MS_ERR_FORMAT},
        {"{\"peft_type\":\"LORA\",\"r\":8,\"r\":8}", "duplicate", MS_ERR_FORMAT},
        {"[1]", "object", MS_ERR_FORMAT},
    };
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
        ms_error e;
        const mg_acfg *c = load_cfg(v[i].json, &e);
        CHECK(c == NULL && e.status == v[i].st && strstr(e.message, v[i].msg) &&
                  strstr(e.message, "adapter_config.json"),
              "case %zu (%s): status %d message: %s", i, v[i].json, e.status, e.message);
        mg_acfg_free(c);
    }
    ms_error e;
    const mg_acfg *c = load_cfg("{\"peft_type\":\"LORA\",\"new_flag\":false,\"new_list\":[],\"new_obj\":{},"
                                "\"init_lora_weights\":\"gaussian\",\"task_type\":\"CAUSAL_LM\",\"use_bdlora\":null}",
                                &e);
    CHECK(c != NULL, "unset unknown fields and benign values are accepted: %s", e.message);
    mg_acfg_free(c);
    rmdir(g_dir); /* not empty: removed by the caller's rmtree */
}

/* ---- adapter keys ------------------------------------------------------ */

/* Writes a safetensors file whose tensors are the given names, F32 [2,2]
 * (or dtype I32 for names starting with '!'). */
static void write_keys(const char *path, const char *const *names, size_t n)
{
    st_wtensor *w = calloc(n, sizeof *w);
    for (size_t i = 0; i < n; i++) {
        w[i].name = names[i][0] == '!' ? names[i] + 1 : names[i];
        w[i].dtype = names[i][0] == '!' ? ST_I32 : ST_F32;
        w[i].ndim = 2;
        w[i].shape[0] = w[i].shape[1] = 2;
    }
    st_writer *wr = NULL;
    ms_error e = {0};
    if (st_writer_open(path, w, n, NULL, 0, &wr, &e) == MS_OK) {
        float z[4] = {0};
        for (size_t i = 0; i < n; i++) st_writer_write(wr, z, sizeof z, &e);
        st_writer_finish(wr, &e);
    }
    st_writer_abort(wr);
    free(w);
}

/* Classifies a key set; returns the status and fills k on success. */
static ms_status classify(const char *const *names, size_t n, mg_akeys *k, ms_error *e)
{
    char p[400];
    snprintf(p, sizeof p, "%s/a.safetensors", g_dir);
    unlink(p);
    write_keys(p, names, n);
    st_file *f = NULL;
    ms_status st = st_file_open(p, &f, e);
    if (!st) st = mg_akeys_classify(f, p, k, NULL, e);
    st_file_close(f);
    return st;
}

static void t_akeys(void)
{
    static const char *const good[] = {
        "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight",
        "base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight",
        "base_model.model.model.layers.0.self_attn.q_proj.lora_magnitude_vector",
        "base_model.model.model.embed_tokens.lora_embedding_A",
        "base_model.model.model.embed_tokens.lora_embedding_B",
        "base_model.model.model.embed_tokens.base_layer.weight",
        "base_model.model.model.embed_tokens.token_adapter.trainable_tokens_delta",
        "base_model.model.lm_head.weight",
        "base_model.model.model.norm.weight",
    };
    mg_akeys k;
    ms_error e;
    /* classification needs no open file afterwards: check slots right away */
    char p[400];
    snprintf(p, sizeof p, "%s/a.safetensors", g_dir);
    unlink(p);
    write_keys(p, good, 9);
    st_file *f = NULL;
    CHECK(st_file_open(p, &f, &e) == MS_OK, "open: %s", e.message);
    CHECK(f && mg_akeys_classify(f, p, &k, NULL, &e) == MS_OK, "classify: %s", e.message);
    if (f && k.mods) {
        const mg_amod *q = mg_akeys_find(&k, "model.layers.0.self_attn.q_proj");
        const mg_amod *em = mg_akeys_find(&k, "model.embed_tokens");
        const mg_amod *hd = mg_akeys_find(&k, "lm_head");
        CHECK(k.n == 4 && k.n_tensors == 9, "%zu modules, %zu tensors", k.n, k.n_tensors);
        CHECK(q && q->t[MG_SLOT_A] && q->t[MG_SLOT_B] && q->t[MG_SLOT_MAG], "q_proj slots");
        CHECK(em && em->t[MG_SLOT_EA] && em->t[MG_SLOT_EB] && em->t[MG_SLOT_BASE] && em->t[MG_SLOT_TOKENS],
              "embed slots");
        CHECK(hd && hd->t[MG_SLOT_FULL], "lm_head full");
        mg_akeys_free(&k);
    }
    st_file_close(f);
    static const char *const named[] = {
        "base_model.model.model.layers.0.mlp.up_proj.lora_A.default.weight",
        "base_model.model.model.layers.0.mlp.up_proj.lora_B.default.weight",
        "base_model.model.model.embed_tokens.lora_embedding_A.default",
        "base_model.model.lm_head.modules_to_save.default.weight",
    };
    CHECK(classify(named, 4, &k, &e) == MS_OK, "named variant: %s", e.message);
    if (k.mods) {
        const mg_amod *hd = mg_akeys_find(&k, "lm_head");
        CHECK(hd && hd->t[MG_SLOT_MTS], "modules_to_save.default.weight is the trained copy");
    }
    mg_akeys_free(&k);
    static const char *const wrapper[] = {
        "base_model.model.lm_head.modules_to_save.weight",
        "base_model.model.lm_head.original_module.weight",
        "base_model.model.lm_head.weight",
    };
    CHECK(classify(wrapper, 3, &k, &e) == MS_OK, "wrapper keys: %s", e.message);
    if (k.mods) {
        const mg_amod *hd = mg_akeys_find(&k, "lm_head");
        CHECK(k.n == 1 && hd && hd->t[MG_SLOT_MTS] && hd->t[MG_SLOT_ORIG] && hd->t[MG_SLOT_FULL], "wrapper slots");
    }
    mg_akeys_free(&k);
    static const struct {
        const char *keys[3];
        const char *msg;
    } bad[] = {
        {{"model.layers.0.self_attn.q_proj.lora_A.weight"}, "does not start with"},
        {{"base_model.model.model.layers.0.self_attn.q_proj.lora_B.bias"}, "lora_bias"},
        {{"base_model.model.model.layers.0.self_attn.q_proj.lora_A.x.y.weight"}, "not a PEFT LoRA key"},
        {{"base_model.model.model.layers.0.self_attn.q_proj.hada_w1"}, "not a PEFT LoRA key"},
        {{"base_model.model.model..layers.lora_A.weight"}, "malformed"},
        {{"base_model.model.a.lora_A.one.weight", "base_model.model.b.lora_A.two.weight"}, "one adapter per file"},
        {{"base_model.model.m.lora_A.weight", "base_model.model.m.lora_A.default.weight"}, "are both the lora_A"},
        {{"!base_model.model.m.lora_A.weight"}, "only F32, BF16 and F16"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        size_t n = bad[i].keys[1] ? 2 : 1;
        ms_status st = classify(bad[i].keys, n, &k, &e);
        CHECK(st != MS_OK && strstr(e.message, bad[i].msg), "bad keys %zu: %s", i, e.message);
        if (!st) mg_akeys_free(&k);
    }
}

/* ---- executor edge cases ---------------------------------------------- */

/* Captures the bytes written. */
static ms_status sink_cap(void *user, const void *data, size_t n, ms_error *err)
{
    (void)err;
    memcpy(user, data, n);
    return MS_OK;
}

static void t_apply_edges(void)
{
    /* W [2, 4] bf16 zeros in row 1; DoRA with B = 0 -> row 1 has norm zero. */
    uint16_t W[8] = {0x3f80, 0x3f80, 0x3f80, 0x3f80, 0, 0, 0, 0};
    float A[4] = {1, 1, 1, 1}, B[2] = {0, 0}, mag[2] = {1, 1};
    st_tensor tw = {.name = "w", .dtype = ST_BF16, .ndim = 2, .shape = {2, 4}, .numel = 8, .data = W, .nbytes = 16};
    st_tensor ta = {.name = "a", .dtype = ST_F32, .ndim = 2, .shape = {1, 4}, .numel = 4, .data = A, .nbytes = 16};
    st_tensor tb = {.name = "b", .dtype = ST_F32, .ndim = 2, .shape = {2, 1}, .numel = 2, .data = B, .nbytes = 8};
    st_tensor tm = {.name = "m", .dtype = ST_F32, .ndim = 1, .shape = {2}, .numel = 2, .data = mag, .nbytes = 8};
    mg_otensor o;
    memset(&o, 0, sizeof o);
    snprintf(o.name, sizeof o.name, "w");
    o.ndim = 2, o.shape[0] = 2, o.shape[1] = 4, o.rows = 2, o.cols = 4, o.src = &tw, o.src_rows = 2, o.n_ops = 1;
    o.ops[0] = (mg_op){.adapter = 0, .delta = MG_DELTA_DORA, .A = &ta, .B = &tb, .mag = &tm, .r = 1, .scale = 1};
    const char *labels[1] = {"adapter 1 (x)"};
    uint16_t out[8];
    mg_sink sink = {sink_cap, out};
    ms_error e = {0};
    ms_status st = mg_apply_tensor(&o, ST_BF16, mg_kernels_get(), labels, &sink, NULL, &e);
    CHECK(st == MS_ERR_INVALID && strstr(e.message, "norm zero") && strstr(e.message, "row 1"), "DoRA zero norm: %s",
          e.message);
    /* A huge delta overflows bf16 -> refused as non-finite. */
    float Bbig[2] = {3e38f, 0};
    tb.data = Bbig;
    o.ops[0].delta = MG_DELTA_LORA;
    o.ops[0].mag = NULL;
    o.ops[0].scale = 10;
    st = mg_apply_tensor(&o, ST_BF16, mg_kernels_get(), labels, &sink, NULL, &e);
    CHECK(st == MS_ERR_INVALID && strstr(e.message, "non-finite"), "overflow: %s", e.message);
    /* A plain delta: W + B·A·s, rounded once. */
    float Bs[2] = {0.5f, 0.25f};
    tb.data = Bs;
    o.ops[0].scale = 2;
    mg_apply_stats stats;
    st = mg_apply_tensor(&o, ST_BF16, mg_kernels_get(), labels, &sink, &stats, &e);
    CHECK(st == MS_OK, "lora: %s", e.message);
    CHECK(out[0] == 0x4000 && out[4] == 0x3f00, "1 + 0.5*1*2 = 2 (0x4000), 0 + 0.25*2 = 0.5 (0x3f00): %04x %04x",
          out[0], out[4]);
    CHECK(stats.changed[0] == 8, "changed %llu", (unsigned long long)stats.changed[0]);
}

int main(int argc, char **argv)
{
    snprintf(g_dir, sizeof g_dir, "/tmp/ms_merge_units_XXXXXX");
    if (!mkdtemp(g_dir)) return 1;
    static const test_case cases[] = {
        {"merge_kernels_variants", t_variants},
        {"merge_acfg_patterns", t_acfg_patterns},
        {"merge_acfg_targets", t_acfg_targets},
        {"merge_acfg_refusals", t_acfg_refusals},
        {"merge_akeys", t_akeys},
        {"merge_apply_edges", t_apply_edges},
    };
    int rc = test_main(argc, argv, cases, (int)(sizeof cases / sizeof cases[0]));
    mg_rmtree(g_dir);
    return rc;
}
