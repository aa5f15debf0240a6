// Class-weighted cross-entropy: the CUDA twin of csrc/ops/crossentropy.c. B is at most a few
// thousand and V a handful of classes, so one block does it all: a thread per row, double sums
// reduced over the block in a fixed order, then the gradient rows with the summed weight.
#include "crossentropy.cuh"

enum { CE_THREADS = 256 };

// log(sum_i exp(z[i])) of one row z: (V,), in double as the CPU computes it
__device__ double row_logsumexp(const float *z, int V) {
    double mx = z[0], sum = 0.0;
    for (int i = 1; i < V; i++)
        mx = z[i] > mx ? z[i] : mx;
    for (int i = 0; i < V; i++)
        sum += exp(z[i] - mx);
    return mx + log(sum);
}

// the weight of label y, NaN for a label outside [0, V) (which then spreads to the loss)
__device__ double label_weight(int y, const float *weights, int V) {
    if (y < 0 || y >= V) return nan("");
    return weights != nullptr ? (double)weights[y] : 1.0;
}

// one block of CE_THREADS threads; dlogits may alias logits (each row is read before it is written)
__global__ void crossentropy_kernel(float *loss, float *dlogits, const float *logits, const int32_t *labels,
                                    const float *weights, int B, int V, double grad_scale) {
    __shared__ double shared[32];
    double total = 0.0, norm = 0.0;
    for (int b = threadIdx.x; b < B; b += blockDim.x) {
        const int y = labels[b];
        const double w = label_weight(y, weights, V);
        const float *z = logits + (int64_t)b * V;
        norm += w;
        total += y >= 0 && y < V ? w * (row_logsumexp(z, V) - z[y]) : w;
    }
    norm = block_sum(norm, shared);
    total = block_sum(total, shared);
    if (threadIdx.x == 0 && loss != nullptr) *loss = (float)(total / norm);
    if (dlogits == nullptr) return;
    for (int b = threadIdx.x; b < B; b += blockDim.x) {
        const int y = labels[b];
        const double w = label_weight(y, weights, V);
        const float *z = logits + (int64_t)b * V;
        float *dz = dlogits + (int64_t)b * V;
        const double lse = row_logsumexp(z, V);
        for (int i = 0; i < V; i++)
            dz[i] = (float)(grad_scale * w / norm * (exp(z[i] - lse) - (i == y)));
    }
}

int crossentropy_forward_backward_cuda(float *loss, float *dlogits, const float *logits,
                                       const int32_t *labels, const float *weights, int B, int V,
                                       float grad_scale, cudaStream_t stream) {
    if (B < 0 || V < 1) return (int)cudaErrorInvalidValue;
    crossentropy_kernel<<<1, CE_THREADS, 0, stream>>>(loss, dlogits, logits, labels, weights, B, V,
                                                      grad_scale);
    return lf_launch_status();
}
