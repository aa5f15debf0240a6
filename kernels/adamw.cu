// Global-norm gradient clipping and the fused AdamW step: the CUDA twin of csrc/train/clip.c and
// csrc/train/adamw.c. Every kernel walks the whole tensor table, each block taking a grid-stride
// share of every tensor, so one launch serves any number of tensors of any sizes.
//
// The element arithmetic is adamw.c's, operation for operation, in round-to-nearest intrinsics
// (__fmul_rn, __fadd_rn, ...) that the compiler never fuses into FMAs, so f32 results equal the CPU's
// bit for bit; the scalar factors (bias corrections, step size) are computed on the host in double
// exactly as adamw.c computes them.
#include <math.h>

#include "adamw.cuh"

enum { NORM_THREADS = 256, ADAMW_BLOCKS = 1024, ADAMW_THREADS = 256 };

// partial[b]: the sum over block b's share of every gradient of (grad * inv_scale)^2, in double
__global__ void grad_sumsq_kernel(double *partial, const lf_adamw_tensor *tensors, int n_tensors,
                                  float inv_scale) {
    __shared__ double shared[32];
    const int64_t first = (int64_t)blockIdx.x * blockDim.x + threadIdx.x,
                  stride = (int64_t)gridDim.x * blockDim.x;
    double s = 0.0;
    for (int t = 0; t < n_tensors; t++) {
        const float *g = tensors[t].grad;
        const int64_t n = tensors[t].n;
        for (int64_t i = first; i < n; i += stride) {
            const double gi = __fmul_rn(g[i], inv_scale);
            s += gi * gi; // exact in double: the product of two floats
        }
    }
    s = block_sum(s, shared);
    if (threadIdx.x == 0) partial[blockIdx.x] = s;
}

// one block of GRAD_NORM_BLOCKS threads: the norm from the partial sums, the clip factor as
// clip.c's grad_clip computes it, and the skip decision
__global__ void grad_norm_finish_kernel(lf_grad_norm_state *state, int clips, float max_norm, float inv_scale,
                                        int skip_nonfinite) {
    __shared__ double shared[32];
    const double sum = block_sum(state->partial[threadIdx.x], shared);
    if (threadIdx.x != 0) return;
    const double norm = sqrt(sum);
    float clip = 1.0f;
    if (clips) {
        clip = __fdiv_rn(max_norm, __fadd_rn((float)norm, 1e-6f));
        if (clip > 1.0f) clip = 1.0f;
    }
    const int found_inf = !isfinite(norm);
    state->norm = norm;
    state->clip = clip;
    state->inv_scale = inv_scale;
    state->found_inf = found_inf;
    state->skip = found_inf && skip_nonfinite;
}

int grad_norm_clip_cuda(lf_grad_norm_state *state, const lf_adamw_tensor *tensors, int n_tensors,
                        const lf_update *u, cudaStream_t stream) {
    if (state == nullptr || u == nullptr || n_tensors < 0 || (n_tensors > 0 && tensors == nullptr))
        return (int)cudaErrorInvalidValue;
    const float inv_scale = u->grad_scale;
    grad_sumsq_kernel<<<GRAD_NORM_BLOCKS, NORM_THREADS, 0, stream>>>(state->partial, tensors, n_tensors,
                                                                     inv_scale);
    int rc = lf_launch_status();
    if (rc != 0) return rc;
    grad_norm_finish_kernel<<<1, GRAD_NORM_BLOCKS, 0, stream>>>(
        state, u->max_grad_norm > 0, (float)u->max_grad_norm, inv_scale, u->skip_nonfinite != 0);
    return lf_launch_status();
}

// the per-step scalars of adamw.c's adamw_update, in float
struct adamw_factors {
    float decay, w1, beta2, w2, bias2_sqrt, neg_step_size, eps;
    int decays;
};

// torch's lerp(start, end, w): fma(w, end - start, start) for w < 0.5, else fma(w - 1, end - start, end)
__device__ __forceinline__ float torch_lerp(float start, float end, float w) {
    const float diff = __fsub_rn(end, start);
    return w < 0.5f ? fmaf(w, diff, start) : fmaf(__fsub_rn(w, 1.0f), diff, end);
}

__global__ void adamw_kernel(const lf_adamw_tensor *tensors, int n_tensors, adamw_factors f,
                             const lf_grad_norm_state *state) {
    float inv_scale = 1.0f, clip = 1.0f;
    if (state != nullptr) {
        if (state->skip) return;
        inv_scale = state->inv_scale;
        clip = state->clip;
    }
    const int64_t first = (int64_t)blockIdx.x * blockDim.x + threadIdx.x,
                  stride = (int64_t)gridDim.x * blockDim.x;
    for (int t = 0; t < n_tensors; t++) {
        const lf_adamw_tensor x = tensors[t];
        const int decays = f.decays && !x.no_decay;
        for (int64_t i = first; i < x.n; i += stride) {
            const float g = __fmul_rn(__fmul_rn(x.grad[i], inv_scale), clip);
            const float p = decays ? __fmul_rn(x.param[i], f.decay) : x.param[i];
            const float m = torch_lerp(x.m[i], g, f.w1);
            const float v = __fadd_rn(__fmul_rn(x.v[i], f.beta2), __fmul_rn(__fmul_rn(f.w2, g), g));
            const float denom = __fadd_rn(__fdiv_rn(__fsqrt_rn(v), f.bias2_sqrt), f.eps);
            x.m[i] = m;
            x.v[i] = v;
            x.param[i] = __fadd_rn(p, __fdiv_rn(__fmul_rn(f.neg_step_size, m), denom));
        }
    }
}

int adamw_update_cuda(const lf_adamw_tensor *tensors, int n_tensors, const lf_adamw_hparams *h, int64_t step,
                      const lf_grad_norm_state *state, cudaStream_t stream) {
    if (h == nullptr || step < 1 || n_tensors < 0 || (n_tensors > 0 && tensors == nullptr))
        return (int)cudaErrorInvalidValue;
    if (n_tensors == 0) return 0;
    adamw_factors f;
    f.decay = (float)(1.0 - h->lr * h->weight_decay);
    f.w1 = (float)(1.0 - h->beta1);
    f.beta2 = (float)h->beta2;
    f.w2 = (float)(1.0 - h->beta2);
    const double bias1 = 1.0 - pow(h->beta1, (double)step);
    f.bias2_sqrt = (float)sqrt(1.0 - pow(h->beta2, (double)step));
    f.neg_step_size = (float)(-(h->lr / bias1));
    f.eps = (float)h->eps;
    f.decays = h->weight_decay != 0.0;
    adamw_kernel<<<ADAMW_BLOCKS, ADAMW_THREADS, 0, stream>>>(tensors, n_tensors, f, state);
    return lf_launch_status();
}
