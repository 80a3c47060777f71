/* test_badfiles.c: runs every case of tests/data/bad/cases.json (written by
 * tools/gen_bad_files.py) through its loader (st_file, st_set, config,
 * gen_config). A malformed case must be refused with a message containing
 * the expected substring and naming the file or directory, using under a
 * second of CPU time (wall time would count other processes on a loaded
 * machine); a control case must load. The ASan+UBSan pass of tests/run.sh
 * runs the same cases, so a sanitizer report fails the suite. */
#include <stdlib.h>
#include <time.h>

#include "base/err.h"
#include "base/json.h"
#include "io/st.h"
#include "model/config.h"
#include "util.h"

#define BAD_DIR "tests/data/bad"

/* Runs one case; returns the status and fills e. */
static ms_status run_case(const char *loader, const char *path, ms_error *e, const char **note)
{
    *note = NULL;
    if (!strcmp(loader, "st_file")) {
        st_file *f = NULL;
        ms_status s = st_file_open(path, &f, e);
        if (!s) {
            /* touch every byte so a bad view would show under ASan */
            volatile unsigned sum = 0;
            for (size_t i = 0; i < st_file_count(f); i++) {
                const st_tensor *t = st_file_get(f, i);
                for (uint64_t j = 0; j < t->nbytes; j++) sum += ((const unsigned char *)t->data)[j];
            }
            (void)sum;
        }
        st_file_close(f);
        return s;
    }
    if (!strcmp(loader, "st_set")) {
        st_set *s = NULL;
        ms_status r = st_set_open(path, &s, e);
        if (!r && st_set_count(s) == 0) r = ms_seterr(e, MS_ERR_INTERNAL, "empty set");
        st_set_close(s);
        return r;
    }
    if (!strcmp(loader, "config")) {
        qwen3_config c;
        return config_load(path, &c, e);
    }
    if (!strcmp(loader, "gen_config")) {
        gen_config g;
        return gen_config_load(path, &g, e);
    }
    return ms_seterr(e, MS_ERR_INTERNAL, "unknown loader %s", loader);
}

static void t_corpus(void)
{
    ms_error e = {0};
    cJSON *cases = json_load_file(BAD_DIR "/cases.json", 1 << 20, &e);
    REQUIRE(cases && cJSON_IsArray(cases), "cases.json: %s", e.message);
    int n = 0, n_bad = 0;
    const cJSON *c;
    cJSON_ArrayForEach(c, cases)
    {
        const char *rel = NULL, *loader = NULL, *expect = NULL, *what = NULL;
        json_get_string(c, "path", 1, &rel, "case", NULL);
        json_get_string(c, "loader", 1, &loader, "case", NULL);
        json_get_string(c, "expect", 1, &expect, "case", NULL);
        json_get_string(c, "what", 1, &what, "case", NULL);
        CHECK(rel && loader && expect && what, "case %d is incomplete", n);
        if (!rel || !loader || !expect || !what) continue;
        char path[512];
        snprintf(path, sizeof path, "%s/%s", BAD_DIR, rel);
        double t0 = ut_cpu_now();
        ms_error ce = {0};
        const char *note;
        ms_status s = run_case(loader, path, &ce, &note);
        double dt = ut_cpu_now() - t0;
        n++;
        CHECK(dt < 1.0, "%s: took %.2f s of CPU time", rel, dt);
        if (!*expect) {
            CHECK(s == MS_OK, "%s (%s) must load: %s", rel, what, ce.message);
            continue;
        }
        n_bad++;
        CHECK(s != MS_OK, "%s (%s) was accepted", rel, what);
        if (s == MS_OK) continue;
        CHECK(strstr(ce.message, expect) != NULL, "%s (%s): message \"%s\" lacks \"%s\"", rel, what, ce.message,
              expect);
        CHECK(strstr(ce.message, path) != NULL, "%s: message \"%s\" does not name the file", rel, ce.message);
    }
    CHECK(n_bad >= 40, "only %d malformed cases", n_bad);
    printf("  %d cases (%d malformed) checked\n", n, n_bad);
    cJSON_Delete(cases);
}

int main(int argc, char **argv)
{
    static const test_case cases[] = {{"badfiles_corpus", t_corpus}};
    return test_main(argc, argv, cases, 1);
}
