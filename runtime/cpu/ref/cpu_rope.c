/* cpu_rope.c: rotary position embedding as transformers computes it for
 * Qwen3 (docs/numerics.md §1.4): inv_freq in fp32 (default or YaRN with the fixed
 * `factor` behaviour), angle = float(pos) * inv_freq in fp32, cos/sin scaled
 * by attention_scaling and cast to the activation dtype, then rotate_half
 * pairing (i, i + d/2). Other rope types are rejected by config.c; this file
 * trusts the config it is given. */
#include <math.h>
#include <stdlib.h>

#include "base/err.h"
#include "cpu/ref/cpu.h"

/* YaRN's find_correction_dim: the dimension whose wavelength fits n_rot turns in orig_max. */
static double yarn_correction_dim(double n_rot, int dim, double base, double orig_max)
{
    return (dim * log(orig_max / (n_rot * 2.0 * M_PI))) / (2.0 * log(base));
}

/* Computes inv_freq (default or YaRN) and attention_scaling from the config. */
ms_status cpu_rope_init(cpu_rope *r, const qwen3_config *c, ms_error *err)
{
    const int d = c->head_dim, half = c->head_dim / 2;
    r->head_dim = d;
    r->scaling = 1.0f;
    r->inv_freq = NULL;
    if (d <= 0 || d % 2) return ms_seterr(err, MS_ERR_INVALID, "config.json: head_dim %d must be positive and even", d);
    if (!(c->rope_theta > 1.0))
        return ms_seterr(err, MS_ERR_INVALID, "config.json: rope_theta %g must be > 1", c->rope_theta);
    r->inv_freq = malloc((size_t)half * sizeof(float));
    if (!r->inv_freq) return ms_seterr(err, MS_ERR_NOMEM, "rope: out of memory");
    const float base = (float)c->rope_theta;
    for (int i = 0; i < half; i++) {
        /* HF: base ** (arange(0, d, 2).float() / d), all fp32 */
        float pos_freq = powf(base, (float)(2 * i) / (float)d);
        r->inv_freq[i] = 1.0f / pos_freq;
    }
    if (!c->rope_yarn) return MS_OK;

    const double f = c->yarn_factor, lo_max = c->yarn_original_max;
    if (!(f > 0) || !(lo_max > 0)) {
        cpu_rope_free(r);
        return ms_seterr(err, MS_ERR_INVALID,
                         "config.json: yarn factor %g and original_max_position_embeddings %g must be > 0", f, lo_max);
    }
    const double beta_fast = c->yarn_beta_fast > 0 ? c->yarn_beta_fast : 32.0;
    const double beta_slow = c->yarn_beta_slow > 0 ? c->yarn_beta_slow : 1.0;
    double lo = yarn_correction_dim(beta_fast, d, c->rope_theta, lo_max);
    double hi = yarn_correction_dim(beta_slow, d, c->rope_theta, lo_max);
    if (c->yarn_truncate) {
        lo = floor(lo);
        hi = ceil(hi);
    }
    if (lo < 0) lo = 0;
    if (hi > d - 1) hi = d - 1;
    if (lo == hi) hi += 0.001; /* HF: prevent a zero-width ramp */
    for (int i = 0; i < half; i++) {
        float pos_freq = powf(base, (float)(2 * i) / (float)d);
        float inv_extra = 1.0f / pos_freq;
        float inv_inter = 1.0f / ((float)f * pos_freq);
        float ramp = ((float)i - (float)lo) / (float)(hi - lo);
        ramp = ramp < 0.0f ? 0.0f : ramp > 1.0f ? 1.0f : ramp;
        float extra = 1.0f - ramp; /* share of the unscaled (extrapolated) frequency */
        r->inv_freq[i] = inv_inter * (1.0f - extra) + inv_extra * extra;
    }
    double att = c->yarn_attention_factor > 0 ? c->yarn_attention_factor : f > 1 ? 0.1 * log(f) + 1.0 : 1.0;
    r->scaling = (float)att;
    return MS_OK;
}

/* Frees the frequency table; NULL-safe. */
void cpu_rope_free(cpu_rope *r)
{
    if (!r) return;
    free(r->inv_freq);
    r->inv_freq = NULL;
}

/* cos and sin of one position's angles, scaled and cast as HF does. */
void cpu_rope_cos_sin(const cpu_rope *r, int pos, float *cos_out, float *sin_out, st_dtype act)
{
    for (int i = 0; i < r->head_dim / 2; i++) {
        float ang = (float)pos * r->inv_freq[i];
        cos_out[i] = round_act(cosf(ang) * r->scaling, act);
        sin_out[i] = round_act(sinf(ang) * r->scaling, act);
    }
}

/* rotate_half RoPE of one head in place. */
void cpu_rope_apply(float *x, const float *cos_v, const float *sin_v, int d, st_dtype act)
{
    const int h = d / 2;
    for (int i = 0; i < h; i++) {
        float x1 = x[i], x2 = x[i + h];
        /* x * cos + rotate_half(x) * sin, rotate_half(x) = (-x2, x1); each product rounded */
        x[i] = round_act(round_act(x1 * cos_v[i], act) + round_act(-x2 * sin_v[i], act), act);
        x[i + h] = round_act(round_act(x2 * cos_v[i], act) + round_act(x1 * sin_v[i], act), act);
    }
}
