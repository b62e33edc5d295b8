/* The CPU loops of spikelight.dynamics.fused.recurrent's Function in C (fp32), loaded through ctypes.
 *
 * Compiled on first use by the system C compiler (see library.py); without one,
 * the plain-PyTorch loops of dynamics/fused/steps.py run instead. No Python or torch headers:
 * every tensor arrives as a pointer to contiguous memory.
 *
 * Layout: a step's tensors are [R, H] (R = B·..., rows; H = neurons, the last dim),
 * sequences [T, R, H], N = R·H elements per step.
 *
 * Rounding: compiled with -ffp-contract=off, so every element-wise expression rounds
 * op by op like the ATen kernels of the reference loop (same operation order, written
 * next to each line). The one difference from the loop is the recurrent current: the
 * sum over presynaptic spikes z_{t-1} W_recᵀ is taken over the neurons that spiked only
 * (in neuron order; exact products, since a spike is 1), where the loop's BLAS product
 * sums all H terms in its own order: the two agree to float rounding (an ulp or so).
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    int64_t T, R, H;
    const float *ff;       /* [T, R, H] feed-forward current */
    const float *w_t;      /* [H, H] W_recᵀ: row j is what a spike of neuron j adds; NULL = no recurrence */
    const float *z0;       /* [R, H] spikes before step 0; NULL = none */
    float *v, *a, *ref;    /* [R, H] state: initial in, final out (a, ref: ALIF / refractory only) */
    const float *beta;     /* [H] adaptation strength (adaptive ALIF) */
    float *h, *s, *u;      /* [T, R, H] pre-reset potential, spikes, surrogate input (adaptive only) */
    uint8_t *mask;         /* [T, R, H] steps that could fire (refractory only) */
    float *rec_v, *rec_a, *rec_ref; /* [T, R, H] state after every step, or NULL */
    float *cur;            /* [H] scratch */
    float tau, v_rest, thr, rho, keep, vr, soft;  /* soft: what a soft reset subtracts (v_th; v_th/leak for eprop) */
    int32_t charge;        /* 0 IF, 1 LIF (decay_input), 2 LIF without */
    int32_t v_rest_zero, hard, vr_add, alif, adaptive, normalize, strict, refractory;
    int64_t spikes;        /* out: number of non-zero spikes written */
} fwd_args;

int64_t spikelight_abi_version(void) { return 4; }

/* The refractory gate of one neuron (reference.refractory_gate): no spike while ref > 0 (the mask, saved for
 * backward, says whether it could fire); ref = R after a spike, else counts down to 0. Returns the spike. */
static inline __attribute__((always_inline)) float refractory_gate(float sp, float *restrict rf,
                                                                   uint8_t *restrict mask, const float frefr) {
    const float r0 = *rf;
    const float m = r0 <= 0.0f ? 1.0f : 0.0f;
    *mask = (uint8_t)m;
    sp = sp * m;
    float rn = r0 - 1.0f;
    rn = rn < 0.0f ? 0.0f : rn;
    *rf = sp > 0.0f ? frefr : rn;
    return sp;
}

/* One row of one step: the element-wise update of H neurons. Always inlined into the specialised
 * copies below, where CHARGE / KIND / NORMALIZE / REFR are constants and the loop vectorises; the
 * remaining flags are selects. v - v_rest with v_rest = 0, and v + s·v_reset with v_reset = 0, give
 * the values of the loop's skipped ops (at most the sign of a zero differs). */
#define KIND_LIF 0
#define KIND_ALIF 1      /* adaptation variable kept, threshold fixed (β = 0) */
#define KIND_ADAPTIVE 2  /* threshold v_th + β a */
static inline __attribute__((always_inline)) int64_t fwd_row(
        const int64_t H, const float *restrict ff, const float *restrict cur, float *restrict v, float *restrict a,
        float *restrict rf, const float *restrict beta, float *restrict h, float *restrict s, float *restrict u,
        uint8_t *restrict mask, const float tau,
        const float v_rest, const float thr, const float rho, const float keep, const float vr, const float soft,
        const float frefr,
        const int strict, const int recur, const int CHARGE, const int KIND, const int NORMALIZE, const int REFR,
        const int HARD) {
    int64_t count = 0;
    for (int64_t i = 0; i < H; i++) {
        const float x = recur ? ff[i] + cur[i] : ff[i];    /* torch.add(ff_t, mm) */
        const float vv = v[i];
        float hh;
        if (CHARGE == 0) {
            hh = vv + x;                                   /* v + x */
        } else {
            const float vd = vv - v_rest;
            if (CHARGE == 1) hh = vv + (x - vd) / tau;     /* v + (x - (v - v_rest)) / tau */
            else hh = (vv - vd / tau) + x;                 /* v - (v - v_rest) / tau + x */
        }
        float sp;
        if (KIND == KIND_ADAPTIVE) {                       /* (h - (v_th + β a)) [/ v_th] >= 0 */
            float ut = a[i] * beta[i] + thr;
            ut = hh - ut;
            if (NORMALIZE) ut = ut / thr;
            sp = (strict ? ut > 0.0f : ut >= 0.0f) ? 1.0f : 0.0f;
            u[i] = ut;
        } else if (NORMALIZE) {
            const float us = (hh - thr) / thr;
            sp = (strict ? us > 0.0f : us >= 0.0f) ? 1.0f : 0.0f;
        } else {
            sp = (strict ? hh > thr : hh >= thr) ? 1.0f : 0.0f;
        }
        if (REFR) sp = refractory_gate(sp, rf + i, mask + i, frefr);  /* no spike while ref > 0 */
        if (KIND != KIND_LIF) {                            /* a = ρ a + (1 - ρ) s */
            const float an = a[i] * rho + sp * keep;
            a[i] = an;
        }
        const float vn = HARD ? (hh + (-hh) * sp) + sp * vr  /* hard: h - h s + v_reset s */
                              : hh + sp * -soft;             /* soft: h - v_th s (v_th/leak: eprop) */
        v[i] = vn;
        h[i] = hh;
        s[i] = sp;
        count += sp != 0.0f;
    }
    return count;
}

/* Whether any of z[0..n) is non-zero (-0.0 counts as zero): one OR over the bits, no branch per element. */
static inline int any_nonzero(const float *restrict z, const int64_t n) {
    uint32_t any = 0;
    for (int64_t j = 0; j < n; j++) {
        uint32_t bits;
        memcpy(&bits, z + j, sizeof bits);
        any |= bits << 1;
    }
    return any != 0;
}

/* One row of a product with spikes: out = z Wᵀ (w_t = Wᵀ, [n_in, n_out]) summed over the non-zero z
 * only, in index order (a spike is 1: no product). Blocks of 32 silent inputs are skipped on one test;
 * any z works (0 skipped, 1 added, others multiplied), so a user's initial z0 may be anything. */
static inline void spike_row(const int64_t n_in, const int64_t n_out, const float *restrict z,
                             const float *restrict w_t, float *restrict out) {
    memset(out, 0, (size_t)n_out * sizeof(float));
    if (!z) return;
    for (int64_t j0 = 0; j0 < n_in; j0 += 32) {
        const int64_t j1 = j0 + 32 < n_in ? j0 + 32 : n_in;
        if (!any_nonzero(z + j0, j1 - j0)) continue;
        for (int64_t j = j0; j < j1; j++) {
            const float zj = z[j];
            if (zj == 0.0f) continue;
            const float *restrict w = w_t + j * n_out;
            if (zj == 1.0f)
                for (int64_t i = 0; i < n_out; i++) out[i] = out[i] + w[i];
            else
                for (int64_t i = 0; i < n_out; i++) out[i] = out[i] + zj * w[i];
        }
    }
}

#define ROW(CHARGE, KIND, NORMALIZE, REFR, HARD)                                                           \
    fwd_row(H, ff, cur, v, a, rf, beta, h, sp, u, mk, tau, v_rest, thr, rho, keep, vr, soft, frefr, strict,     \
            recur,                                                                                         \
            CHARGE, KIND, NORMALIZE, REFR, HARD)
#define KINDS(CHARGE, HARD)                                                                                \
    switch (kind * 4 + normalize * 2 + refractory) {                                                        \
    case 0: n = ROW(CHARGE, 0, 0, 0, HARD); break;                                                          \
    case 4: n = ROW(CHARGE, 1, 0, 0, HARD); break;                                                          \
    case 5: n = ROW(CHARGE, 1, 0, 1, HARD); break;                                                          \
    case 6: n = ROW(CHARGE, 1, 1, 0, HARD); break;                                                          \
    case 7: n = ROW(CHARGE, 1, 1, 1, HARD); break;                                                          \
    case 8: n = ROW(CHARGE, 2, 0, 0, HARD); break;                                                          \
    case 9: n = ROW(CHARGE, 2, 0, 1, HARD); break;                                                          \
    case 10: n = ROW(CHARGE, 2, 1, 0, HARD); break;                                                         \
    default: n = ROW(CHARGE, 2, 1, 1, HARD); break;                                                         \
    }
#define CHARGES(HARD)                                                                                      \
    if (charge == 0) { KINDS(0, HARD) }                                                                     \
    else if (charge == 1) { KINDS(1, HARD) }                                                                \
    else { KINDS(2, HARD) }

void spikelight_forward(fwd_args *p) {
    const int64_t T = p->T, R = p->R, H = p->H, N = R * H;
    const float tau = p->tau, v_rest = p->v_rest_zero ? 0.0f : p->v_rest, thr = p->thr, rho = p->rho;
    const float keep = p->keep, vr = p->vr_add ? p->vr : 0.0f, frefr = (float)p->refractory, soft = p->soft;
    const int charge = p->charge, hard = p->hard, strict = p->strict, recur = p->w_t != NULL;
    const int kind = p->adaptive ? KIND_ADAPTIVE : p->alif ? KIND_ALIF : KIND_LIF;
    const int normalize = p->alif && p->normalize, refractory = p->alif && p->refractory > 0;
    const float *w_t = p->w_t, *z0 = p->z0, *beta = p->beta;
    float *cur = p->cur;
    int64_t count = 0;
    for (int64_t t = 0; t < T; t++) {
        const float *z = t ? p->s + (t - 1) * N : z0;
        for (int64_t r = 0; r < R; r++) {
            const int64_t row = t * N + r * H;
            const float *ff = p->ff + row;
            if (recur) spike_row(H, H, z ? z + r * H : NULL, w_t, cur);
            float *v = p->v + r * H, *a = p->a ? p->a + r * H : NULL, *rf = p->ref ? p->ref + r * H : NULL;
            float *h = p->h + row, *sp = p->s + row, *u = p->u ? p->u + row : NULL;
            uint8_t *mk = p->mask ? p->mask + row : NULL;
            int64_t n;
            if (hard) { CHARGES(1) } else { CHARGES(0) }
            count += n;
            const size_t bytes = (size_t)H * sizeof(float);  /* the state after the step, for a monitor */
            if (p->rec_v) memcpy(p->rec_v + row, v, bytes);
            if (p->rec_a && a) memcpy(p->rec_a + row, a, bytes);
            if (p->rec_ref && rf) memcpy(p->rec_ref + row, rf, bytes);
        }
    }
    p->spikes = count;
}

typedef struct {
    int64_t N, H;
    float *gI;             /* [T, N] p_t = dL/dI_t (written) */
    const float *GS;       /* [N] p_{t+1} W (torch's product), or zeros */
    float *ga;             /* [N] (1-ρ) dL/da_t, carried backwards (in/out) */
    const float *Dg;       /* [K, N] block from t0: gain · surrogate'(u_t) · mask */
    const float *h, *s;    /* [T, N] */
    const float *g_h;      /* [T, N] dL/dh_t or NULL */
    const float *g_s;      /* [T, N] dL/ds_t from later layers, or NULL */
    const float *beta;     /* [H] */
    int64_t t0;            /* first step of the Dg block */
    float leak, gain, rho, e0, e1, e_soft, dbn;
    int32_t hard, has_e, adaptive;
} bwd_args;

/* One step t of the reverse-time recurrence (RecurrentFunction.backward):
 *   GS  = g_s + p_{t+1} W + w_t + E p_{t+1}     (E = (leak/gain)(v_reset - h) hard, -v_th leak/gain soft)
 *   p_t = gain g_h + F p_{t+1} + D GS          (F = leak (1 - s) hard, leak soft)
 *   w_{t-1} = ρ w_t − (1-ρ) β D/gain GS
 * has_next: p_{t+1} reaches step t (not the last step, not cut by TBPTT); ga_live: w_t is not zero. */
static inline void bwd_row(const int64_t H, const float *restrict GS, float *restrict ga,
                           const float *restrict D, const float *restrict hh, const float *restrict ss,
                           const float *restrict gh, const float *restrict beta, const float *restrict nxt,
                           float *restrict pt, const float leak, const float gain, const float rho, const float e0,
                           const float e1, const float e_soft, const float dbn, const int hard, const int has_e,
                           const int adaptive, const int has_next, const int ga_live, const int has_gh,
                           const float *restrict gs) {
    for (int64_t i = 0; i < H; i++) {
        float g = gs ? gs[i] + GS[i] : GS[i];
        if (ga_live) g = g + ga[i];
        float pe = 0.0f;
        if (has_next) {
            const float n = nxt[i];
            if (has_e) g = g + (hard ? (e0 + hh[i] * e1) * n : n * e_soft);
            pe = (hard ? (leak - leak * ss[i]) : leak) * n;
        }
        if (has_gh) pe = pe + gh[i] * gain;
        pt[i] = pe + D[i] * g;
        if (adaptive) {
            const float d = D[i] * (beta[i] * dbn) * g;
            ga[i] = ga_live ? ga[i] * rho + d : d;
        } else if (ga_live) {
            ga[i] = ga[i] * rho;
        }
    }
}

#define BROW(HARD, HAS_E, ADAPTIVE, HAS_NEXT, GA_LIVE)                                                     \
    bwd_row(H, GS + o, ga + o, D + o, hh + o, ss + o, gh ? gh + o : NULL, beta, nxt ? nxt + o : NULL,        \
            pt + o, leak, gain, rho, e0, e1, e_soft, dbn, HARD, HAS_E, ADAPTIVE, HAS_NEXT, GA_LIVE, gh != NULL,   \
            gs ? gs + o : NULL)

void spikelight_backward_step(bwd_args *p, int64_t t, int32_t has_next, int32_t ga_live) {
    const int64_t N = p->N, H = p->H, R = N / H, base = t * N;
    const float *nxt = has_next ? p->gI + base + N : NULL;
    const float *D = p->Dg + (t - p->t0) * N, *hh = p->h + base, *ss = p->s + base;
    const float *gh = p->g_h ? p->g_h + base : NULL, *gs = p->g_s ? p->g_s + base : NULL;
    const float *GS = p->GS, *beta = p->beta;
    float *pt = p->gI + base, *ga = p->ga;
    const float leak = p->leak, gain = p->gain, rho = p->rho, e0 = p->e0, e1 = p->e1, e_soft = p->e_soft;
    const float dbn = p->dbn;
    const int hard = p->hard, has_e = p->has_e, adaptive = p->adaptive;
    for (int64_t r = 0; r < R; r++) {
        const int64_t o = r * H;
        /* the middle of a sequence (p_{t+1} and w_t both live) gets its own copies */
        if (has_next && ga_live && has_e && adaptive)
            hard ? BROW(1, 1, 1, 1, 1) : BROW(0, 1, 1, 1, 1);
        else if (has_next && has_e && !adaptive)
            hard ? BROW(1, 1, 0, 1, ga_live) : BROW(0, 1, 0, 1, ga_live);
        else
            BROW(hard, has_e, adaptive, has_next, ga_live);
    }
}

/* out[M, n_out] = z[M, n_in] Wᵀ with w_t = Wᵀ [n_in, n_out], over the non-zero z (spike_row per row). */
void spikelight_spike_linear(const float *z, const float *w_t, int64_t M, int64_t n_in, int64_t n_out, float *out) {
    for (int64_t m = 0; m < M; m++) spike_row(n_in, n_out, z + m * n_in, w_t, out + m * n_out);
}

/* part[j, :] (+)= Σ_{m0 <= m < m1} z[m, j] · g[m, :] over the non-zero z, in row order. With touched != NULL, a
 * row j of part is zeroed on its first spike (touched[j] = 1) instead of being added to. */
static void grad_w_rows(const float *g, const float *z, int64_t m0, int64_t m1, int64_t n_z, int64_t n_g,
                        float *part, unsigned char *touched) {
    for (int64_t m = m0; m < m1; m++) {
        const float *zr = z + m * n_z, *gr = g + m * n_g;
        for (int64_t j0 = 0; j0 < n_z; j0 += 32) {
            const int64_t j1 = j0 + 32 < n_z ? j0 + 32 : n_z;
            if (!any_nonzero(zr + j0, j1 - j0)) continue;
            for (int64_t j = j0; j < j1; j++) {
                const float zj = zr[j];
                if (zj == 0.0f) continue;
                float *restrict out = part + j * n_g;
                if (touched && !touched[j]) {
                    touched[j] = 1;
                    memset(out, 0, (size_t)n_g * sizeof(float));
                }
                if (zj == 1.0f)
                    for (int64_t i = 0; i < n_g; i++) out[i] = out[i] + gr[i];
                else
                    for (int64_t i = 0; i < n_g; i++) out[i] = out[i] + zj * gr[i];
            }
        }
    }
}

/* gwT[j, :] += Σ_m z[m, j] · g[m, :] (z [M, n_z], g [M, n_g], gwT [n_z, n_g]): the weight gradient of a
 * product with spikes, summed over the non-zero z only (dL/dW_recᵀ: n_z = n_g = H; the LSNN readout's
 * dL/dWᵀ: n_g = C classes). Two-level sum: blocks of GRAD_W_BLOCK rows into a partial, then the partial
 * into gwT. One running sum over all M = T·B rows (~2·10⁵ for 784 steps × 256) drifted 4–8·10⁻⁵
 * relative from the float64 product on trained LSNN readouts, 30× the dense product's (2026-12-06). */
#define GRAD_W_BLOCK 256
void spikelight_grad_w_sparse(const float *g, const float *z, int64_t M, int64_t n_z, int64_t n_g, float *gwT) {
    float *part = M > GRAD_W_BLOCK ? malloc((size_t)(n_z * n_g) * sizeof(float)) : NULL;
    unsigned char *touched = part ? malloc((size_t)n_z) : NULL;
    if (!touched) {  /* one block (or no memory): the running sum straight into gwT */
        free(part);
        grad_w_rows(g, z, 0, M, n_z, n_g, gwT, NULL);
        return;
    }
    for (int64_t m0 = 0; m0 < M; m0 += GRAD_W_BLOCK) {
        const int64_t m1 = m0 + GRAD_W_BLOCK < M ? m0 + GRAD_W_BLOCK : M;
        memset(touched, 0, (size_t)n_z);
        grad_w_rows(g, z, m0, m1, n_z, n_g, part, touched);
        for (int64_t j = 0; j < n_z; j++) {
            if (!touched[j]) continue;
            float *restrict out = gwT + j * n_g;
            const float *restrict p = part + j * n_g;
            for (int64_t i = 0; i < n_g; i++) out[i] = out[i] + p[i];
        }
    }
    free(touched);
    free(part);
}

/* out[M, N] = A[M, K] B[K, N] for a small K (a readout's C classes): one pass over the output,
 * which BLAS does slowly at this shape (measured 8-20 ms vs 3 ms for M=25088, K=10, N=220). */
void spikelight_mm_small_k(const float *A, const float *B, int64_t M, int64_t K, int64_t N, float *out) {
    if (K == 0) {  /* an empty sum */
        if (M * N) memset(out, 0, (size_t)(M * N) * sizeof(float));
        return;
    }
    for (int64_t m = 0; m < M; m++) {
        const float *restrict a = A + m * K;
        float *restrict o = out + m * N;
        for (int64_t i = 0; i < N; i++) o[i] = a[0] * B[i];
        for (int64_t k = 1; k < K; k++) {
            const float ak = a[k];
            const float *restrict b = B + k * N;
            for (int64_t i = 0; i < N; i++) o[i] = o[i] + ak * b[i];
        }
    }
}

/* ---- the lsnn_official convention (spikelight.dynamics.fused.official): fire from v_{t-1} against A_t,
 * normalised by A_t; v_t = charge(v_{t-1}, I_t) - A_t z_{t-1}. Op for op the reference's rounding. ---- */
typedef struct {
    int64_t T, R, H;
    const float *ff, *w_t, *z0;   /* z0: the spikes before step 0 the recurrence reads (NULL = none) */
    const float *zr0;             /* [R, H] the last spike the reset reads (the neuron state's) */
    float *v, *a, *ref;           /* [R, H] state: initial in, final out */
    const float *beta;            /* [H] (adaptive only) */
    float *h, *s, *u, *A;         /* [T, R, H] potential v_t, spikes, surrogate input, adaptive threshold */
    uint8_t *mask;                /* [T, R, H] steps that could fire (refractory only) */
    float *rec_v, *rec_a, *rec_ref, *cur;
    float tau, thr, rho, keep;
    int32_t charge, adaptive, refractory;
    int64_t spikes;
} off_fwd_args;

static inline __attribute__((always_inline)) int64_t official_row(
        const int64_t H, const float *restrict ff, const float *restrict cur, const float *restrict zr,
        float *restrict v, float *restrict a, float *restrict rf, const float *restrict beta, float *restrict h,
        float *restrict s, float *restrict u, float *restrict Ao, uint8_t *restrict mask, const float tau,
        const float thr, const float rho, const float keep, const float frefr, const int recur, const int CHARGE,
        const int ADAPTIVE, const int REFR) {
    int64_t count = 0;
    for (int64_t i = 0; i < H; i++) {
        const float x = recur ? ff[i] + cur[i] : ff[i];
        const float vv = v[i];
        const float A = ADAPTIVE ? beta[i] * a[i] + thr : thr;    /* v_th + β a */
        const float ut = (vv - A) / A;                             /* (v_{t-1} - A_t) / A_t */
        float sp = ut > 0.0f ? 1.0f : 0.0f;
        if (REFR) sp = refractory_gate(sp, rf + i, mask + i, frefr);
        float hh;
        if (CHARGE == 0) hh = vv + x;                              /* v + x */
        else if (CHARGE == 1) hh = vv + (x - vv) / tau;            /* v + (x - (v - 0)) / tau */
        else hh = (vv - vv / tau) + x;                             /* v - (v - 0) / tau + x */
        hh = hh - A * zr[i];                                       /* - A_t z_{t-1} */
        a[i] = a[i] * rho + sp * keep;
        v[i] = hh;
        h[i] = hh;
        s[i] = sp;
        u[i] = ut;
        Ao[i] = A;
        count += sp != 0.0f;
    }
    return count;
}

#define OROW(CHARGE, ADAPTIVE, REFR)                                                                       \
    official_row(H, ff, cur, zr, v, a, rf, beta, h, sp, u, Ao, mk, tau, thr, rho, keep, frefr, recur, CHARGE, \
                 ADAPTIVE, REFR)
#define OKINDS(CHARGE)                                                                                     \
    switch (adaptive * 2 + refractory) {                                                                    \
    case 0: n = OROW(CHARGE, 0, 0); break;                                                                  \
    case 1: n = OROW(CHARGE, 0, 1); break;                                                                  \
    case 2: n = OROW(CHARGE, 1, 0); break;                                                                  \
    default: n = OROW(CHARGE, 1, 1); break;                                                                 \
    }

void spikelight_official_forward(off_fwd_args *p) {
    const int64_t T = p->T, R = p->R, H = p->H, N = R * H;
    const float tau = p->tau, thr = p->thr, rho = p->rho, keep = p->keep, frefr = (float)p->refractory;
    const int charge = p->charge, adaptive = p->adaptive, refractory = p->refractory > 0, recur = p->w_t != NULL;
    const float *w_t = p->w_t, *beta = p->beta;
    float *cur = p->cur;
    int64_t count = 0;
    for (int64_t t = 0; t < T; t++) {
        const float *z = t ? p->s + (t - 1) * N : p->z0;
        const float *zrs = t ? p->s + (t - 1) * N : p->zr0;
        for (int64_t r = 0; r < R; r++) {
            const int64_t row = t * N + r * H;
            const float *ff = p->ff + row, *zr = zrs + r * H;
            if (recur) spike_row(H, H, z ? z + r * H : NULL, w_t, cur);
            float *v = p->v + r * H, *a = p->a + r * H, *rf = p->ref + r * H;
            float *h = p->h + row, *sp = p->s + row, *u = p->u + row, *Ao = p->A + row;
            uint8_t *mk = p->mask ? p->mask + row : NULL;
            int64_t n;
            if (charge == 0) { OKINDS(0) } else if (charge == 1) { OKINDS(1) } else { OKINDS(2) }
            count += n;
            const size_t bytes = (size_t)H * sizeof(float);
            if (p->rec_v) memcpy(p->rec_v + row, v, bytes);
            if (p->rec_a) memcpy(p->rec_a + row, a, bytes);
            if (p->rec_ref) memcpy(p->rec_ref + row, rf, bytes);
        }
    }
    p->spikes = count;
}

typedef struct {
    int64_t N, H;
    float *gI;                    /* [T, N] dL/dI_t (written) */
    const float *GS;              /* [N] p_{t+1} W (torch's product), or zeros */
    float *V, *alpha, *Z;         /* [N] carried: dL/dv_t, dL/da_t, dL/dz_t through the next step's reset */
    const float *D;               /* [T, N] surrogate'(u_t) · mask */
    const float *u, *A, *s, *zr0; /* [T, N] x3, [N] */
    const float *g_h, *g_s;       /* [T, N] or NULL */
    const float *beta;            /* [H] (adaptive only) */
    float leak, gain, rho, keep;
    int32_t adaptive, detach;
} off_bwd_args;

/* Step t of OfficialALIFFunction.backward (see its docstring); cut: the state before step t was detached. */
void spikelight_official_backward_step(off_bwd_args *p, int64_t t, int32_t cut) {
    const int64_t N = p->N, H = p->H, base = t * N;
    const float leak = p->leak, gain = p->gain, rho = p->rho, keep = p->keep;
    const int adaptive = p->adaptive, detach = p->detach;
    const float *zp = t ? p->s + base - N : p->zr0;
    for (int64_t i = 0; i < N; i++) {
        float V = p->V[i];
        if (p->g_h) V = V + p->g_h[base + i];
        float S = p->Z[i] + p->GS[i];
        S = S + keep * p->alpha[i];
        if (p->g_s) S = S + p->g_s[base + i];
        const float q = p->D[base + i] * S;
        const float A = p->A[base + i];
        p->gI[base + i] = gain * V;
        const float dA = -V * zp[i] - q * (p->u[base + i] + 1.0f) / A;
        p->Z[i] = detach ? 0.0f : -A * V;
        p->V[i] = leak * V + q / A;
        p->alpha[i] = adaptive ? rho * p->alpha[i] + p->beta[i % H] * dA : rho * p->alpha[i];
        if (cut) p->V[i] = p->alpha[i] = p->Z[i] = 0.0f;
    }
}
