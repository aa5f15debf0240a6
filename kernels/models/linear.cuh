// What the device architectures (kernels/models/*.cu) share: a model's linear layers on the device
// (frozen or trained weight, bias, LoRA branch with the host's dropout streams, read on the device)
// and the bump allocator that lays activations out over dm->work.
#pragma once

#include "device_model.cuh"
#include "lora.cuh"
#include "matmul.cuh"
#include "models/plan.h"

// the weight of linear l on the device: its f32 param when trained (a head), else the frozen copy
static inline const void *linear_weight(const lf_cuda_model *dm, const lf_linear *l) {
    return l->weight_param >= 0 ? (const void *)lf_cuda_param(dm, l->weight_param) : dm->frozen[l->weight];
}

static inline const void *linear_bias(const lf_cuda_model *dm, const lf_linear *l) {
    if (l->bias_param >= 0) return lf_cuda_param(dm, l->bias_param);
    return l->bias >= 0 ? dm->frozen[l->bias] : NULL;
}

// out: (T, out) = x: (T, in) W^T + b, plus the LoRA branch (u: (T, r) f32 saved) when l has one
static inline int linear_forward(lf_cuda_model *dm, const lf_linear *l, void *out, float *u, const void *x,
                                 int T, lf_dtype dt) {
    const lf_model_desc *m = dm->host;
    if (int rc = matmul_forward_cuda(out, x, linear_weight(dm, l), linear_bias(dm, l), T, l->in, l->out, 0,
                                     dm->blas_workspace, dt, dm->stream))
        return rc;
    if (l->lora_a < 0) return 0;
    return lora_forward_cuda(out, u, x, lf_cuda_param(dm, l->lora_a), lf_cuda_param(dm, l->lora_b), T, l->in,
                             l->out, m->lora.r, m->lora.scaling, lf_lora_dropout_p(m->training, m->lora),
                             lf_cuda_lora_key(dm, l), dt, dm->stream);
}

// what linear_backward does with dx: adds the input gradient to it, or writes it (dx need not be zeroed)
typedef enum { DX_WRITE = 0, DX_ADD = 1 } dx_mode;

// dx: (T, in) += or = by mode (NULL: not needed); the trained weight's, bias's and LoRA's gradients +=;
// lora_scratch: linears_lora_scratch_bytes(m, T)
static inline int linear_backward(lf_cuda_model *dm, const lf_linear *l, void *dx, dx_mode mode,
                                  void *lora_scratch, const void *dout, const void *x, const float *u, int T,
                                  lf_dtype dt) {
    const lf_model_desc *m = dm->host;
    if (int rc = matmul_backward_cuda(dx, lf_cuda_grad(dm, l->weight_param), lf_cuda_grad(dm, l->bias_param),
                                      dout, x, linear_weight(dm, l), T, l->in, l->out, mode == DX_ADD,
                                      dm->blas_workspace, dt, dm->stream))
        return rc;
    // the LoRA branch's dx adds to what the matmul wrote
    if (l->lora_a < 0) return 0;
    return lora_backward_cuda(
        dx, lf_cuda_grad(dm, l->lora_a), lf_cuda_grad(dm, l->lora_b), lora_scratch, dout, x, u,
        lf_cuda_param(dm, l->lora_a), lf_cuda_param(dm, l->lora_b), T, l->in, l->out, m->lora.r,
        m->lora.scaling, lf_lora_dropout_p(m->training, m->lora), lf_cuda_lora_key(dm, l), dt, dm->stream);
}

// bytes of LoRA scratch for linear_backward / linears_backward over T tokens, for any of m's linears
static inline size_t linears_lora_scratch_bytes(const lf_model_desc *m, int T) {
    size_t most = 0;
    for (int k = 0; k < m->n_linears; k++) {
        const size_t b =
            lora_scratch_bytes(T, m->linears[k].in, m->lora.r > 0 ? m->lora.r : 1, LORA_MAX_BRANCHES);
        most = b > most ? b : most;
    }
    return most;
}

// the LoRA branches of the n linears ls (those with one) in br, out_k (dout_k) of each: (T, ls[k]->out) rows
// ld[k] apart, u_k its saved u; returns how many
static inline int lora_branches_of(const lf_cuda_model *dm, const lf_linear *const *ls, int n,
                                   void *const *outs, const int64_t *ld, float *const *us, lora_branch *br) {
    int nb = 0;
    for (int k = 0; k < n; k++) {
        const lf_linear *l = ls[k];
        if (l->lora_a < 0) continue;
        br[nb++] = {lf_cuda_param(dm, l->lora_a),
                    lf_cuda_param(dm, l->lora_b),
                    us[k],
                    outs[k],
                    ld[k],
                    l->out,
                    lf_cuda_lora_key(dm, l),
                    lf_cuda_grad(dm, l->lora_a),
                    lf_cuda_grad(dm, l->lora_b)};
    }
    return nb;
}

// for an architecture's frozen_chains: the n linears ls, which read the same input, with their frozen weights
// uploaded side by side, and their biases when all of them have one (none when one is trained)
static inline void linears_side_by_side(const lf_linear *const *ls, int n, int *next) {
    int weights = 1, biases = 1;
    for (int k = 0; k < n; k++)
        weights = weights && ls[k]->weight >= 0, biases = biases && ls[k]->bias >= 0;
    for (int k = 0; weights && k + 1 < n; k++) {
        next[ls[k]->weight] = ls[k + 1]->weight;
        if (biases) next[ls[k]->bias] = ls[k + 1]->bias;
    }
}

// 1 when the n linears ls, which read the same input, run as one product: frozen weights uploaded side by
// side (the architecture's frozen_chains), and their frozen biases too or none of them has one
static inline int linears_fused(const lf_cuda_model *dm, const lf_linear *const *ls, int n) {
    const size_t E = lf_cuda_dtype_size(dm->dtype);
    const int biased = ls[0]->bias >= 0;
    for (int k = 0; k < n; k++) {
        const lf_linear *l = ls[k];
        if (l->weight < 0 || l->weight_param >= 0 || l->bias_param >= 0 || (l->bias >= 0) != biased ||
            l->in != ls[0]->in)
            return 0;
        if (k == 0) continue;
        const lf_linear *p = ls[k - 1];
        if (dm->frozen[l->weight] != (char *)dm->frozen[p->weight] + (size_t)p->out * p->in * E) return 0;
        if (biased && dm->frozen[l->bias] != (char *)dm->frozen[p->bias] + (size_t)p->out * E) return 0;
    }
    return 1;
}

// the outputs of the n linears ls over T tokens in `base` (room for T times the sum of their widths, of the
// dtype): when they run fused, one (T, sum) matrix, outs[k] its columns from the widths before k on, and the
// row stride (the sum) is returned; else one (T, width_k) matrix each, one after the other, and 0
static inline int64_t linears_layout(const lf_cuda_model *dm, const lf_linear *const *ls, int n, void *base,
                                     int T, void **outs) {
    const size_t E = lf_cuda_dtype_size(dm->dtype);
    const int fused = linears_fused(dm, ls, n);
    int64_t at = 0, sum = 0;
    for (int k = 0; k < n; k++) {
        outs[k] = base == NULL ? NULL : (char *)base + (size_t)at * E;
        at += fused ? ls[k]->out : (int64_t)T * ls[k]->out;
        sum += ls[k]->out;
    }
    return fused ? sum : 0;
}

// lds[k]: the row stride of linear k's output (ld when fused: ld > 0, else its width); returns how many
// frozen products the n linears take: 1 fused, else n
static inline int linears_row_strides(const lf_linear *const *ls, int n, int64_t ld, int64_t *lds) {
    for (int k = 0; k < n; k++)
        lds[k] = ld > 0 ? ld : ls[k]->out;
    return ld > 0 ? 1 : n;
}

// The n <= LORA_MAX_BRANCHES linears ls that read the same x: (T, in): out_k: (T, out_k) = x W_k^T + b_k,
// laid out by linears_layout (ld: what it returned): one product over the side-by-side weights when fused (ld
// > 0), else a product each; then their LoRA branches (u_k: (T, r) f32 saved) in one launch
static inline int linears_forward(lf_cuda_model *dm, const lf_linear *const *ls, int n, void *const *outs,
                                  int64_t ld, float *const *us, const void *x, int T, lf_dtype dt) {
    const lf_model_desc *m = dm->host;
    int64_t lds[LORA_MAX_BRANCHES];
    const int products = linears_row_strides(ls, n, ld, lds);
    for (int k = 0; k < products; k++) {
        const lf_linear *l = ls[k];
        if (int rc = matmul_forward_cuda(outs[k], x, linear_weight(dm, l), linear_bias(dm, l), T, l->in,
                                         ld > 0 ? (int)ld : l->out, 0, dm->blas_workspace, dt, dm->stream))
            return rc;
    }
    lora_branch br[LORA_MAX_BRANCHES];
    const int nb = lora_branches_of(dm, ls, n, outs, lds, us, br);
    if (nb == 0) return 0;
    return lora_group_forward_cuda(br, nb, x, T, ls[0]->in, m->lora.r, m->lora.scaling,
                                   lf_lora_dropout_p(m->training, m->lora), dt, dm->stream);
}

// The backward of linears_forward: dx: (T, in) += or = by mode the sum of the linears' input gradients
// (NULL: not needed): one product over the side-by-side gradients douts (laid out as the outputs: ld) when
// fused, else a product each; the LoRA branches' in two launches, their gradients +=; lora_scratch:
// linears_lora_scratch_bytes(m, T)
static inline int linears_backward(lf_cuda_model *dm, const lf_linear *const *ls, int n, void *dx,
                                   dx_mode mode, void *lora_scratch, void *const *douts, int64_t ld,
                                   const void *x, float *const *us, int T, lf_dtype dt) {
    const lf_model_desc *m = dm->host;
    int64_t lds[LORA_MAX_BRANCHES];
    const int products = linears_row_strides(ls, n, ld, lds);
    for (int k = 0; k < products; k++) {
        const lf_linear *l = ls[k];
        if (int rc =
                matmul_backward_cuda(dx, lf_cuda_grad(dm, l->weight_param), lf_cuda_grad(dm, l->bias_param),
                                     douts[k], x, linear_weight(dm, l), T, l->in, ld > 0 ? (int)ld : l->out,
                                     k > 0 || mode == DX_ADD, dm->blas_workspace, dt, dm->stream))
            return rc;
    }
    lora_branch br[LORA_MAX_BRANCHES];
    const int nb = lora_branches_of(dm, ls, n, douts, lds, us, br);
    if (nb == 0) return 0;
    return lora_group_backward_cuda(br, nb, dx, lora_scratch, x, T, ls[0]->in, m->lora.r, m->lora.scaling,
                                    lf_lora_dropout_p(m->training, m->lora), dt, dm->stream);
}

// The workspace planner over dm->work (models/plan.h): every buffer 256-byte aligned.
enum { LF_CUDA_ALIGN = 256 };
static inline lf_plan cuda_plan(void *base) { return lf_plan_start(base, LF_CUDA_ALIGN); }
