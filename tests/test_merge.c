/* test_merge.c: lora-merge end to end through mg_run against the PEFT
 * reference fixtures of tests/ref/gen_merge_fixtures.py (tests/data/merge):
 * every merged tensor must equal PEFT merge_and_unload bit for bit (the
 * report gives the count and the largest difference in ulps when not),
 * untouched tensors must be the base's bytes, the tie flag and the shard
 * layout must be the reference's, and two runs must give identical files.
 * Also: atomicity under injected I/O faults at every step (the out dir is
 * absent or the previous one, no temp dir is left), and --force semantics. */
#include <dirent.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/json.h"
#include "base/sha256.h"
#include "fsio.h"
#include "io/st.h"
#include "mg.h"
#include "model/config.h"
#include "util.h"

#define DATA "tests/data/merge"

/* Count of entries in dir whose name starts with prefix. */
static int count_prefix(const char *dir, const char *prefix)
{
    DIR *d = opendir(dir);
    int n = 0;
    struct dirent *e;
    if (!d) return -1;
    while ((e = readdir(d)))
        if (!strncmp(e->d_name, prefix, strlen(prefix))) n++;
    closedir(d);
    return n;
}

/* Largest difference in ulps between two equally typed element arrays, and how many differ. */
static uint64_t ulp_diff(const void *a, const void *b, st_dtype t, uint64_t n, uint64_t *ndiff)
{
    uint64_t worst = 0;
    *ndiff = 0;
    for (uint64_t i = 0; i < n; i++) {
        int64_t x, y;
        if (t == ST_F32) {
            int32_t u, v;
            memcpy(&u, (const char *)a + 4 * i, 4);
            memcpy(&v, (const char *)b + 4 * i, 4);
            x = u, y = v;
        } else {
            int16_t u, v;
            memcpy(&u, (const char *)a + 2 * i, 2);
            memcpy(&v, (const char *)b + 2 * i, 2);
            x = u, y = v;
        }
        uint64_t d = (uint64_t)(x > y ? x - y : y - x);
        if (d) (*ndiff)++;
        if (d > worst) worst = d;
    }
    return worst;
}

/* Fills opts for a fixture case; returns the parsed case.json. */
static cJSON *case_opts(const char *name, mg_opts *o, char bufs[][512], const char *out)
{
    char path[512];
    snprintf(path, sizeof path, DATA "/cases/%s/case.json", name);
    ms_error e = {0};
    cJSON *c = json_load_file(path, 1 << 20, &e);
    if (!c) return NULL;
    memset(o, 0, sizeof *o);
    o->out_dtype = -1;
    const cJSON *base = json_get(c, "base"), *dt = json_get(c, "dtype"), *ads = json_get(c, "adapters");
    snprintf(bufs[0], 512, DATA "/bases/%s", base->valuestring);
    o->base_dir = bufs[0];
    o->out_dir = out;
    if (!strcmp(dt->valuestring, "f32")) o->out_dtype = ST_F32;
    if (!strcmp(dt->valuestring, "f16")) o->out_dtype = ST_F16;
    if (!strcmp(dt->valuestring, "bf16")) o->out_dtype = ST_BF16;
    const cJSON *a;
    int i = 0;
    cJSON_ArrayForEach(a, ads)
    {
        snprintf(bufs[1 + i], 512, DATA "/cases/%s/%s", name, json_get(a, "dir")->valuestring);
        o->adapters[i].dir = bufs[1 + i];
        o->adapters[i].weight = json_get(a, "weight")->valuedouble;
        i++;
    }
    o->n_adapters = i;
    const cJSON *args = json_get(c, "args");
    if (cJSON_GetArraySize(args) == 2 && !strcmp(cJSON_GetArrayItem(args, 0)->valuestring, "--max-shard-size"))
        o->max_shard_bytes = (uint64_t)atof(cJSON_GetArrayItem(args, 1)->valuestring) * 1000; /* "60KB" */
    return c;
}

/* Whether name is in the JSON string array. */
static int in_list(const cJSON *arr, const char *name)
{
    const cJSON *x;
    cJSON_ArrayForEach(x, arr) if (!strcmp(x->valuestring, name)) return 1;
    return 0;
}

/* Runs one fixture case and compares with the reference. */
static void run_case(const char *name)
{
    char dir[256], out[300], out2[300], bufs[MG_MAX_ADAPTERS + 1][512];
    ut_tmpdir(dir, sizeof dir, "merge");
    snprintf(out, sizeof out, "%s/out", dir);
    snprintf(out2, sizeof out2, "%s/out2", dir);
    mg_opts o;
    cJSON *c = case_opts(name, &o, bufs, out);
    REQUIRE(c != NULL, "%s: case.json", name);
    mg_result res;
    ms_error e = {0};
    ms_status st = mg_run(&o, &res, &e);
    CHECK(st == MS_OK, "%s: mg_run: %s", name, e.message);
    if (st) goto done;
    st_set *got = NULL, *base = NULL;
    st_file *exp = NULL;
    char ep[512];
    snprintf(ep, sizeof ep, DATA "/cases/%s/expected.safetensors", name);
    CHECK(st_set_open(out, &got, &e) == MS_OK, "%s: reopen: %s", name, e.message);
    CHECK(st_set_open(o.base_dir, &base, &e) == MS_OK, "%s: base: %s", name, e.message);
    CHECK(st_file_open(ep, &exp, &e) == MS_OK, "%s: expected: %s", name, e.message);
    if (got && base && exp) {
        const cJSON *tensors = json_get(c, "tensors"), *changed = json_get(c, "changed");
        CHECK(st_set_count(got) == (size_t)cJSON_GetArraySize(tensors), "%s: %zu tensors, reference has %d", name,
              st_set_count(got), cJSON_GetArraySize(tensors));
        uint64_t worst = 0, ndiff_total = 0;
        size_t exact = 0;
        const cJSON *t;
        cJSON_ArrayForEach(t, tensors)
        {
            const st_tensor *g = st_set_find(got, t->valuestring);
            CHECK(g != NULL, "%s: missing %s", name, t->valuestring);
            if (!g) continue;
            const st_tensor *ref = in_list(changed, t->valuestring) ? st_file_find(exp, t->valuestring)
                                                                    : st_set_find(base, t->valuestring);
            if (!ref && !strcmp(t->valuestring, "lm_head.weight")) ref = st_set_find(base, "model.embed_tokens.weight");
            CHECK(ref != NULL, "%s: no reference for %s", name, t->valuestring);
            if (!ref) continue;
            CHECK(ref->dtype == g->dtype && ref->numel == g->numel, "%s: %s dtype/shape", name, t->valuestring);
            if (ref->dtype != g->dtype || ref->numel != g->numel) continue;
            uint64_t nd;
            uint64_t w = ulp_diff(g->data, ref->data, g->dtype, g->numel, &nd);
            if (nd)
                printf("  %s: %s: %llu of %llu elements differ, max %llu ulp\n", name, t->valuestring,
                       (unsigned long long)nd, (unsigned long long)g->numel, (unsigned long long)w);
            worst = w > worst ? w : worst;
            ndiff_total += nd;
            exact += nd == 0;
        }
        CHECK(ndiff_total == 0, "%s: %llu elements differ from PEFT (max %llu ulp)", name,
              (unsigned long long)ndiff_total, (unsigned long long)worst);
        qwen3_config cfg;
        char cp[400];
        snprintf(cp, sizeof cp, "%s/config.json", out);
        CHECK(config_load(cp, &cfg, &e) == MS_OK, "%s: config: %s", name, e.message);
        CHECK(cfg.tie_word_embeddings == cJSON_IsTrue(json_get(c, "tie_word_embeddings")), "%s: tie flag", name);
        const cJSON *hi = json_get(c, "hf_index");
        if (hi && cJSON_IsObject(hi)) {
            char ip[400];
            snprintf(ip, sizeof ip, "%s/model.safetensors.index.json", out);
            cJSON *mine = json_load_file(ip, 1 << 20, &e);
            CHECK(mine && cJSON_Compare(mine, hi, 1), "%s: index differs from transformers'", name);
            cJSON_Delete(mine);
        }
    }
    st_set_close(got);
    st_set_close(base);
    st_file_close(exp);
    /* Determinism: a second run gives the same manifest (it holds every file's SHA-256). */
    o.out_dir = out2;
    mg_result res2;
    CHECK(mg_run(&o, &res2, &e) == MS_OK, "%s: second run: %s", name, e.message);
    CHECK(!strcmp(res.manifest_sha256, res2.manifest_sha256), "%s: two runs differ", name);
done:
    cJSON_Delete(c);
    mg_rmtree(dir);
}

/* Every case directory of the fixtures. */
static void t_parity(void)
{
    DIR *d = opendir(DATA "/cases");
    REQUIRE(d != NULL, "no fixtures in " DATA "/cases");
    char names[64][256];
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) && n < 64)
        if (e->d_name[0] != '.') snprintf(names[n++], 256, "%s", e->d_name);
    closedir(d);
    CHECK(n >= 20, "only %d fixture cases", n);
    for (int i = 0; i < n; i++) run_case(names[i]);
    printf("  %d PEFT reference cases compared\n", n);
}

/* Hex SHA-256 of a file or "" if missing. */
static void file_sha(const char *path, char out[65])
{
    if (sha256_file(path, out, NULL)) out[0] = '\0';
}

/* st fault hook: fails the k-th writer step (*user counts down). */
static int st_fault_nth(const char *op, void *user)
{
    (void)op;
    return --*(int *)user == 0;
}

/* Injected failures at every I/O step: nothing is left behind, and with
 * --force the previous export is intact. */
static void t_faults(void)
{
    char dir[256], out[300], bufs[MG_MAX_ADAPTERS + 1][512];
    ut_tmpdir(dir, sizeof dir, "merge");
    snprintf(out, sizeof out, "%s/out", dir);
    mg_opts o;
    cJSON *c = case_opts("lora_f16_adapter", &o, bufs, out);
    REQUIRE(c != NULL, "case");
    cJSON_Delete(c);
    ms_error e = {0};
    mg_result res;
    /* First, steps without a previous export. */
    int steps = 0, failures = 0;
    for (int n = 1; n < 200; n++) {
        o.fail_at_step = n;
        ms_status st = mg_run(&o, &res, &e);
        int bad = test_failed_checks_;
        CHECK(count_prefix(dir, ".out.tmp-") == 0, "step %d: temp dir left behind", n);
        if (st == MS_OK) {
            steps = n;
            break;
        }
        failures++;
        CHECK(strstr(e.message, "injected") != NULL, "step %d: unexpected error: %s", n, e.message);
        CHECK(!mg_exists(out), "step %d: %s exists after a failed run (%s)", n, out, e.message);
        if (test_failed_checks_ != bad) break;
    }
    CHECK(steps > 10, "expected many I/O steps, got %d", steps);
    char man[400], before[65], after[65];
    snprintf(man, sizeof man, "%s/medserve-manifest.json", out);
    file_sha(man, before);
    CHECK(before[0], "export missing after the successful run");
    /* Then with --force over the existing export: it must survive any failure. */
    o.force = 1;
    o.adapters[0].weight = 0.5; /* a different export */
    for (int n = 1; n < 200; n++) {
        o.fail_at_step = n;
        ms_status st = mg_run(&o, &res, &e);
        CHECK(count_prefix(dir, ".out.tmp-") == 0, "force step %d: temp dir left behind", n);
        file_sha(man, after);
        if (st == MS_OK) {
            CHECK(strcmp(before, after) != 0, "the forced run did not replace the export");
            break;
        }
        CHECK(!strcmp(before, after), "force step %d: previous export damaged (%s)", n, e.message);
        if (strcmp(before, after)) break;
        failures++;
    }
    /* The st writer's own steps (open, write, fsync, rename, fsyncdir). */
    o.fail_at_step = 0;
    o.force = 0;
    mg_rmtree(out);
    for (int n = 1; n < 100; n++) {
        int k = n;
        st_set_fault_hook(st_fault_nth, &k);
        ms_status st = mg_run(&o, &res, &e);
        st_set_fault_hook(NULL, NULL);
        int bad = test_failed_checks_;
        CHECK(count_prefix(dir, ".out.tmp-") == 0, "st step %d: temp dir left behind", n);
        if (st == MS_OK) break;
        failures++;
        CHECK(!mg_exists(out), "st step %d: %s exists after a failed run (%s)", n, out, e.message);
        if (test_failed_checks_ != bad) break;
    }
    printf("  %d injected failures checked\n", failures);
    mg_rmtree(dir);
}

/* Flips one byte in the middle of the written weights (after_write hook). */
static void corrupt(void *user, const char *tmp)
{
    (void)user;
    char p[600];
    snprintf(p, sizeof p, "%s/model.safetensors", tmp);
    FILE *f = fopen(p, "r+b");
    if (!f) return;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, n - 1000, SEEK_SET);
    int c = fgetc(f);
    fseek(f, n - 1000, SEEK_SET);
    fputc(c ^ 0x01, f);
    fclose(f);
}

/* A byte changed on disk after writing is caught by the read-back check. */
static void t_verify_catches(void)
{
    char dir[256], out[300], bufs[MG_MAX_ADAPTERS + 1][512];
    ut_tmpdir(dir, sizeof dir, "merge");
    snprintf(out, sizeof out, "%s/out", dir);
    mg_opts o;
    cJSON *c = case_opts("lora_all7", &o, bufs, out);
    REQUIRE(c != NULL, "case");
    cJSON_Delete(c);
    o.after_write = corrupt;
    ms_error e = {0};
    mg_result res;
    ms_status st = mg_run(&o, &res, &e);
    CHECK(st == MS_ERR_IO && strstr(e.message, "differ from those written"), "corruption not caught: %s", e.message);
    CHECK(!mg_exists(out) && count_prefix(dir, ".out.tmp-") == 0, "left behind after a failed verify");
    mg_rmtree(dir);
}

/* after_write hook: rewrites the base weights file in place (same bytes, new mtime). */
static void touch_base(void *user, const char *tmp)
{
    (void)tmp;
    char p[600];
    snprintf(p, sizeof p, "%s/model.safetensors", (const char *)user);
    struct timespec ts[2] = {{0, UTIME_NOW}, {0, UTIME_NOW}};
    ts[1].tv_sec = 12345; /* an mtime the file surely did not have */
    ts[1].tv_nsec = 0;
    utimensat(AT_FDCWD, p, ts, 0);
}

/* An input replaced or rewritten during the run fails it. */
static void t_input_changed(void)
{
    char dir[256], out[300], base[300], bufs[MG_MAX_ADAPTERS + 1][512];
    ut_tmpdir(dir, sizeof dir, "merge");
    snprintf(out, sizeof out, "%s/out", dir);
    snprintf(base, sizeof base, "%s/base", dir);
    mg_opts o;
    cJSON *c = case_opts("lora_all7", &o, bufs, out);
    REQUIRE(c != NULL, "case");
    cJSON_Delete(c);
    mkdir(base, 0755);
    static const char *const files[] = {"config.json", "generation_config.json", "model.safetensors"};
    for (int i = 0; i < 3; i++) {
        char a[700], b[700];
        snprintf(a, sizeof a, "%s/%s", o.base_dir, files[i]);
        snprintf(b, sizeof b, "%s/%s", base, files[i]);
        CHECK(mg_copy_file(NULL, a, b, 1 << 24, NULL) == MS_OK, "copy %s", files[i]);
    }
    o.base_dir = base;
    o.after_write = touch_base;
    o.after_write_user = base;
    ms_error e = {0};
    mg_result res;
    ms_status st = mg_run(&o, &res, &e);
    CHECK(st != MS_OK && strstr(e.message, "model.safetensors"), "a changed input must fail the run: %s", e.message);
    CHECK(!mg_exists(out) && count_prefix(dir, ".out.tmp-") == 0, "left behind after a failed run");
    mg_rmtree(dir);
}

/* Refusals about paths and an existing out. */
static void t_paths(void)
{
    char dir[256], out[300], bufs[MG_MAX_ADAPTERS + 1][512];
    ut_tmpdir(dir, sizeof dir, "merge");
    snprintf(out, sizeof out, "%s/out", dir);
    mg_opts o;
    cJSON *c = case_opts("lora_all7", &o, bufs, out);
    REQUIRE(c != NULL, "case");
    cJSON_Delete(c);
    ms_error e = {0};
    mg_result res;
    CHECK(mkdir(out, 0755) == 0, "mkdir");
    CHECK(mg_run(&o, &res, &e) == MS_ERR_INVALID && strstr(e.message, "--force"), "existing out: %s", e.message);
    o.out_dir = o.base_dir;
    o.force = 1;
    CHECK(mg_run(&o, &res, &e) == MS_ERR_INVALID && strstr(e.message, "inputs are never modified"), "out == base: %s",
          e.message);
    o.out_dir = DATA "/bases";
    CHECK(mg_run(&o, &res, &e) == MS_ERR_INVALID && strstr(e.message, "contains the base"), "out contains base: %s",
          e.message);
    char inside[600];
    snprintf(inside, sizeof inside, "%s/sub", o.adapters[0].dir);
    o.out_dir = inside;
    CHECK(mg_run(&o, &res, &e) == MS_ERR_INVALID, "out inside adapter: %s", e.message);
    CHECK(!mg_exists(inside), "created inside the adapter");
    mg_rmtree(dir);
}

int main(int argc, char **argv)
{
    static const test_case cases[] = {
        {"merge_parity_peft", t_parity},
        {"merge_faults_atomic", t_faults},
        {"merge_paths", t_paths},
        {"merge_verify_catches_corruption", t_verify_catches},
        {"merge_input_changed", t_input_changed},
    };
    return test_main(argc, argv, cases, 5);
}
