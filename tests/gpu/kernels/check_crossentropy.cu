// kernels/crossentropy.cu against csrc/ops/crossentropy.c
#include "crossentropy.cuh"
#include "kernel_check.cuh"

extern "C" {
#include "ops/crossentropy.h"
}

// Both sides sum in double and round once to float, so they agree to a few float ulps.
static const double CE_TOLERANCE = 1e-6;

static int32_t *labels_to_device(const std::vector<int32_t> &labels) {
    int32_t *d = NULL;
    CHECK_CUDA(cudaMalloc(&d, labels.size() * sizeof(int32_t) + 1));
    CHECK_CUDA(cudaMemcpy(d, labels.data(), labels.size() * sizeof(int32_t), cudaMemcpyHostToDevice));
    return d;
}

// the loss and (with_grad) dlogits, weighted or not; in_place: dlogits written over logits
// scale: the loss scale of dlogits (the CPU's gradient times scale)
static void check_crossentropy(int B, int V, int weighted, int with_grad, int in_place, uint64_t seed,
                               float scale = 1.0f) {
    char what[160], name[200];
    snprintf(what, sizeof what, "crossentropy B=%d V=%d%s%s%s scale %g", B, V, weighted ? " weighted" : "",
             with_grad ? " dlogits" : " loss-only", in_place ? " in-place" : "", scale);
    std::vector<float> logits = random_vector((int64_t)B * V, -5, 5, seed);
    std::vector<float> weights = random_vector(V, 0.5f, 1.5f, seed + 1), u = random_vector(B, 0, 1, seed + 2);
    std::vector<int32_t> labels((size_t)B);
    for (int b = 0; b < B; b++)
        labels[b] = (int32_t)(u[b] * V) < V ? (int32_t)(u[b] * V) : V - 1;
    std::vector<float> want_grad((size_t)B * V);
    const float want_loss =
        crossentropy_forward_backward(with_grad ? want_grad.data() : NULL, logits.data(), labels.data(),
                                      weighted ? weights.data() : NULL, B, V);
    for (float &g : want_grad)
        g *= scale;
    float *d_logits = (float *)to_device(logits, LF_F32), *d_weights = (float *)to_device(weights, LF_F32);
    float *d_loss = (float *)device_zeros(1, LF_F32);
    float *d_grad = in_place ? d_logits : (float *)device_zeros((int64_t)B * V, LF_F32);
    int32_t *d_labels = labels_to_device(labels);
    if (launched(what,
                 crossentropy_forward_backward_cuda(d_loss, with_grad ? d_grad : NULL, d_logits, d_labels,
                                                    weighted ? d_weights : NULL, B, V, scale, 0))) {
        snprintf(name, sizeof name, "%s: loss", what);
        check_close(name, LF_F32, from_device(d_loss, 1, LF_F32), {want_loss}, CE_TOLERANCE);
        if (with_grad) {
            snprintf(name, sizeof name, "%s: dlogits", what);
            check_close(name, LF_F32, from_device(d_grad, (int64_t)B * V, LF_F32), want_grad, CE_TOLERANCE);
        }
    }
    cudaFree(d_logits);
    cudaFree(d_weights);
    cudaFree(d_loss);
    if (!in_place) cudaFree(d_grad);
    cudaFree(d_labels);
}

// a label outside [0, V) gives a NaN loss (and reads nothing out of bounds)
static void check_bad_label(void) {
    const int B = 4, V = 2;
    std::vector<float> logits = random_vector(B * V, -1, 1, 70);
    std::vector<int32_t> labels = {0, 1, 2, 0};
    float *d_logits = (float *)to_device(logits, LF_F32), *d_loss = (float *)device_zeros(1, LF_F32);
    float *d_grad = (float *)device_zeros(B * V, LF_F32);
    int32_t *d_labels = labels_to_device(labels);
    if (launched("crossentropy bad label", crossentropy_forward_backward_cuda(
                                               d_loss, d_grad, d_logits, d_labels, NULL, B, V, 1.0f, 0))) {
        std::vector<float> loss = from_device(d_loss, 1, LF_F32);
        check_equal("crossentropy bad label: loss is NaN", {(float)isnan(loss[0])}, {1.0f});
    }
    cudaFree(d_logits);
    cudaFree(d_loss);
    cudaFree(d_grad);
    cudaFree(d_labels);
}

int main(void) {
    const int batches[] = {1, 8, 37, 3000}, classes[] = {2, 3, 32};
    uint64_t seed = 900;
    for (int B : batches)
        for (int V : classes) {
            check_crossentropy(B, V, 0, 1, 0, seed += 10);
            check_crossentropy(B, V, 1, 1, 0, seed += 10);
            check_crossentropy(B, V, 1, 0, 0, seed += 10);
        }
    check_crossentropy(8, 2, 1, 1, 1, seed += 10);
    check_crossentropy(3000, 3, 0, 1, 1, seed += 10);
    check_crossentropy(8, 2, 1, 1, 0, seed += 10, 65536.0f); // fp16's loss scale
    check_crossentropy(37, 3, 1, 1, 1, seed += 10, 0.125f);
    check_bad_label();
    return check_summary("check_crossentropy");
}
