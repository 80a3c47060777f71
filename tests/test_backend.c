/* test_backend.c: the backend table and its choice (backend.c), on tiny
 * synthetic models (tools/synth):
 *   - MS_BACKEND_CPU gives cpu-fast for a bf16 model and cpu-reference for
 *     f32 and for a bf16 model the fast backend refuses (odd intermediate
 *     size); int8 weights go to cpu-fast from any dtype;
 *   - MEDSERVE_CPU_REFERENCE set (not "" or "0") gives cpu-reference for
 *     native weights and changes nothing for int8 weights;
 *   - int8 weights on a model cpu-fast refuses: MS_ERR_UNSUPPORTED with the
 *     reason, from backend_select and from ms_engine_create;
 *   - the names reports show (backend_name), CUDA not built in, unknown kinds.
 * That each backend gives the logits transformers gives is test_forward's
 * (both backends on the bf16 fixtures) and test_kernels' (fast vs reference). */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "engine/backend.h"
#include "model/model.h"
#include "util.h"

static char tmp[] = "/tmp/ms_test_backend_XXXXXX";

/* Writes a 1-layer model of dtype (intermediate size inter) into tmp/name and loads it; NULL on failure. */
static model *synth_load(const char *name, const char *dtype, int inter, char *dir, size_t cap)
{
    char cmd[512];
    snprintf(dir, cap, "%s/%s", tmp, name);
    snprintf(cmd, sizeof cmd,
             "build/tools/synth --hidden 64 --layers 1 --heads 2 --kv-heads 1 --head-dim 32 --intermediate %d "
             "--dtype %s --seed 3 --out %s --quiet >/dev/null",
             inter, dtype, dir);
    model *m = NULL;
    ms_error e = {0};
    if (system(cmd) != 0 || model_load(dir, &m, &e) != MS_OK) {
        printf("  %s: %s\n", cmd, e.message);
        return NULL;
    }
    return m;
}

/* The name of backend_select's choice, or "NULL". */
static const char *chosen(const model *m, int q8)
{
    ms_error e = {0};
    const backend_ops *ops = backend_select(MS_BACKEND_CPU, m, q8, &e);
    return ops ? ops->name : "NULL";
}

/* The instance name of a small backend of ops for m (what ms_bench reports). */
static void check_instance_name(const backend_ops *ops, const model *m, int q8, const char *want)
{
    backend_params bp = {
        .n_threads = 1, .max_seqs = 1, .max_tokens = 16, .n_blocks = 2, .block_size = 16, .weights_q8 = q8};
    backend *b = NULL;
    ms_error e = {0};
    CHECK(ops->create(m, &bp, &b, &e) == MS_OK, "%s create: %s", ops->name, e.message);
    if (!b) return;
    CHECK(!strcmp(backend_name(ops, b), want), "%s: instance name %s, expected %s", ops->name, backend_name(ops, b),
          want);
    ops->free(b);
}

/* The selection rule, the environment override and the names. */
static void t_select(void)
{
    char d_bf16[128], d_f32[128], d_odd[128];
    model *bf16 = synth_load("bf16", "bf16", 128, d_bf16, sizeof d_bf16);
    model *f32 = synth_load("f32", "f32", 128, d_f32, sizeof d_f32);
    model *odd = synth_load("odd", "bf16", 63, d_odd, sizeof d_odd);
    CHECK(bf16 && f32 && odd, "synthetic models");
    if (!bf16 || !f32 || !odd) goto out;

    unsetenv("MEDSERVE_CPU_REFERENCE");
    CHECK(!strcmp(chosen(bf16, 0), "cpu-fast"), "bf16: %s", chosen(bf16, 0));
    CHECK(!strcmp(chosen(bf16, 1), "cpu-fast"), "bf16 q8: %s", chosen(bf16, 1));
    CHECK(!strcmp(chosen(f32, 0), "cpu-reference"), "f32: %s", chosen(f32, 0));
    CHECK(!strcmp(chosen(f32, 1), "cpu-fast"), "f32 q8: %s", chosen(f32, 1));
    CHECK(!strcmp(chosen(odd, 0), "cpu-reference"), "odd intermediate: %s", chosen(odd, 0));

    /* the override: "1" (or any other text) forces the reference for native weights only */
    static const char *const values[] = {"1", "yes", "0", ""};
    for (int i = 0; i < 4; i++) {
        setenv("MEDSERVE_CPU_REFERENCE", values[i], 1);
        const int forced = i < 2;
        CHECK(!strcmp(chosen(bf16, 0), forced ? "cpu-reference" : "cpu-fast"), "MEDSERVE_CPU_REFERENCE=\"%s\": bf16 %s",
              values[i], chosen(bf16, 0));
        CHECK(!strcmp(chosen(bf16, 1), "cpu-fast"), "MEDSERVE_CPU_REFERENCE=\"%s\": bf16 q8 %s", values[i],
              chosen(bf16, 1));
        CHECK(!strcmp(chosen(f32, 0), "cpu-reference"), "MEDSERVE_CPU_REFERENCE=\"%s\": f32 %s", values[i],
              chosen(f32, 0));
    }
    unsetenv("MEDSERVE_CPU_REFERENCE");

    /* int8 weights where only the reference could run the model: refused with the fast backend's reason */
    ms_error e = {0};
    CHECK(backend_select(MS_BACKEND_CPU, odd, 1, &e) == NULL && e.status == MS_ERR_UNSUPPORTED &&
              !strcmp(e.message, "cpu backend: int8 weights: odd hidden, intermediate or head size"),
          "odd q8: %s", e.message);
    const char *why = NULL;
    CHECK(!cpu_ref_backend_ops.supports(bf16, 1, &why) && why && strstr(why, "int8"), "reference accepts q8");
    CHECK(cpu_ref_backend_ops.supports(odd, 0, &why) && !why, "reference refuses a native model");
    CHECK(!cpu_fast_backend_ops.supports(f32, 0, &why) && why && strstr(why, "bf16"), "fast accepts f32: %s",
          why ? why : "");
    CHECK(backend_select(MS_BACKEND_CPU, NULL, 0, &e) == NULL && e.status == MS_ERR_INVALID, "NULL model");

    /* what reports show */
    check_instance_name(&cpu_fast_backend_ops, bf16, 0, "cpu-fast-bf16");
    check_instance_name(&cpu_fast_backend_ops, bf16, 1, "cpu-fast-q8");
    check_instance_name(&cpu_ref_backend_ops, bf16, 0, "cpu-reference");
    CHECK(!strcmp(backend_name(&cpu_fast_backend_ops, NULL), "cpu-fast"), "name without an instance");
out:
    model_free(bf16);
    model_free(f32);
    model_free(odd);
}

/* Kinds: CPU is built in, CUDA only with make CUDA=1, anything else is unknown. */
static void t_kinds(void)
{
    ms_error e = {0};
    CHECK(backend_available(MS_BACKEND_CPU, &e) == MS_OK, "cpu: %s", e.message);
    ms_status st = backend_available(MS_BACKEND_CUDA, &e);
    CHECK(st == MS_OK || (st == MS_ERR_UNSUPPORTED && strstr(e.message, "make CUDA=1")), "cuda: %s", e.message);
    CHECK(backend_available((ms_backend_kind)7, &e) == MS_ERR_INVALID && strstr(e.message, "unknown kind 7"),
          "kind 7: %s", e.message);
}

/* The public API reaches the same choice: a CUDA load refused up front (when
 * not built), int8 weights on a model no backend runs refused at engine creation. */
static void t_api(void)
{
    char dir[128];
    model *odd = synth_load("odd_api", "bf16", 63, dir, sizeof dir);
    CHECK(odd != NULL, "synthetic model");
    model_free(odd);
    if (!odd) return;
    ms_error e = {0};
    ms_load_params lp = ms_load_params_default();
    lp.backend = MS_BACKEND_CUDA;
    ms_model *mm = ms_model_load(dir, &lp, &e);
    CHECK(mm || (e.status == MS_ERR_UNSUPPORTED && strstr(e.message, "make CUDA=1")), "cuda load: %s", e.message);
    ms_model_free(mm);
    lp = ms_load_params_default();
    lp.n_threads = 1;
    lp.weights = MS_WEIGHTS_Q8;
    mm = ms_model_load(dir, &lp, &e);
    CHECK(mm != NULL, "q8 load: %s", e.message);
    if (!mm) return;
    ms_engine_params ep = ms_engine_params_default();
    ep.n_ctx = 64;
    ep.max_seqs = 1;
    ms_engine *eng = ms_engine_create(mm, &ep, &e);
    CHECK(!eng && e.status == MS_ERR_UNSUPPORTED && strstr(e.message, "int8 weights: odd"), "q8 engine: %s", e.message);
    ms_engine_free(eng);
    ms_model_free(mm);
}

int main(int argc, char **argv)
{
    if (!mkdtemp(tmp)) {
        printf("not ok mkdtemp\n");
        return 1;
    }
    static const test_case cases[] = {
        {"backend_select", t_select},
        {"backend_kinds", t_kinds},
        {"backend_api", t_api},
    };
    int rc = test_main(argc, argv, cases, (int)(sizeof cases / sizeof cases[0]));
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmp);
    if (system(cmd) != 0) printf("# could not remove %s\n", tmp);
    return rc;
}
