// Gradient clipping by global L2 norm and the fused AdamW step over every trainable tensor
// (csrc/train/clip.h and csrc/train/adamw.h on the GPU), with torch's arithmetic, float for float.
//
// The tensors are a table in device memory (lf_adamw_tensor[n_tensors], built once by the caller),
// all f32. A step is grad_norm_clip_cuda then adamw_update_cuda on one stream: the norm, the clip
// factor and the skip decision stay on the device (lf_grad_norm_state), so nothing waits for the
// host; the host reads state->norm when it logs and state->found_inf when it tracks a loss scale.
// The gradients themselves are left as they are: the update applies inv_scale and the clip factor
// to each gradient as it reads it.
#pragma once

#include "common.cuh"

extern "C" {
#include "train/adamw.h"
}

// one trainable tensor: parameter, gradient, first and second moments, all (n,) f32 on the device
typedef struct {
    float *param;
    const float *grad;
    float *m, *v;
    int64_t n;
    int no_decay; // 1: no weight decay for this tensor (biases, LayerNorm weights, as HF's Trainer)
} lf_adamw_tensor;

enum { GRAD_NORM_BLOCKS = 512 }; // blocks of the norm's first pass: one partial sum each

// device memory that grad_norm_clip_cuda writes and adamw_update_cuda reads
typedef struct {
    double norm;     // the L2 norm of all gradients * inv_scale together, before clipping
    float clip;      // min(1, max_norm / (norm + 1e-6)) in float, as torch; 1 when max_norm <= 0
    float inv_scale; // the unscale factor applied to every gradient first (1 without loss scaling)
    int found_inf;   // 1 when norm is inf or NaN (some gradient is), else 0
    int skip;        // 1 when found_inf and skipping was asked for: adamw_update_cuda changes nothing
    double partial[GRAD_NORM_BLOCKS]; // scratch: the first pass's sums of squares
} lf_grad_norm_state;

// state: the norm of grad * u->grad_scale over tensors: lf_adamw_tensor[n_tensors] (device), the clip
// factor for u->max_grad_norm (<= 0: no clipping) and whether an inf/NaN norm skips the update, as
// the host's lf_update (train/adamw.h) says. Deterministic: a fixed summation order.
int grad_norm_clip_cuda(lf_grad_norm_state *state, const lf_adamw_tensor *tensors, int n_tensors,
                        const lf_update *u, cudaStream_t stream);
// One AdamW step of every tensor in tensors: lf_adamw_tensor[n_tensors] (device) with h (lr already
// scheduled; weight_decay 0 for tensors marked no_decay) and step >= 1 counting this update, on the
// gradients grad * state->inv_scale * state->clip; nothing changes when state->skip is set.
// state NULL: the plain gradients, as adamw_update.
int adamw_update_cuda(const lf_adamw_tensor *tensors, int n_tensors, const lf_adamw_hparams *h, int64_t step,
                      const lf_grad_norm_state *state, cudaStream_t stream);
