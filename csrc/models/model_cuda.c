// The model on the device: a device copy made and run by the CUDA library through the
// lf_cuda_api table (core/cuda_backend.h, kernels/device_model.cu). This file only holds the
// handle, describes the model to the library for each call (lf_model_desc, models/model_desc.h)
// and turns the library's failures into lf_error(LF_ECUDA, ...). A leaf: model.c calls it, it
// calls nothing of model.c.
#include <stdio.h>

#include "core/cuda_backend.h"
#include "core/dtype.h"
#include "core/error.h"
#include "models/model.h"

static int cuda_failure(const lf_cuda_api *api, const char *what) {
    return lf_error(LF_ECUDA, "%s: %s", what, api->last_error());
}

// what the library reads of m for one call: plain data, the tables and the batch borrowed
static lf_model_desc describe(const lf_model *m) {
    lf_model_desc d = {
        .cfg = m->cfg,
        .arch_name = m->arch->name,
        .lora_targets = m->arch->lora_targets,
        .frozen = m->frozen,
        .params = m->params,
        .linears = m->linears,
        .n_frozen = m->n_frozen,
        .n_params = m->n_params,
        .n_linears = m->n_linears,
        .lora = m->lora,
        .arch_state = m->arch_state,
        .training = m->training,
        .gradient_checkpointing = m->gradient_checkpointing,
        .step_seed = lf_model_step_seed(m),
        .batch = m->batch,
    };
    return d;
}

int lf_model_cuda_create(lf_model *m, lf_dtype dtype, int device) {
    const lf_cuda_api *api = lf_cuda();
    if (api == NULL) return lf_error(LF_ECUDA, "CUDA unavailable: %s", lf_cuda_unavailable_reason());
    if (!lf_dtype_is_float(dtype))
        return lf_error(LF_EINVAL, "CUDA compute dtype must be float32, bfloat16 or float16, got %s",
                        lf_dtype_name(dtype) ? lf_dtype_name(dtype) : "an unknown dtype");
    if (api->desc_size != sizeof(lf_model_desc))
        return lf_error(LF_ECUDA, "the CUDA kernels library was built with another models/model_desc.h "
                                  "than _C (rebuild both)");
    if (device < 0) return lf_error(LF_EINVAL, "CUDA device index must be >= 0, got %d", device);
    if (m->cuda_model != NULL && m->cuda_dtype == dtype && m->cuda_device == device) return LF_OK;
    lf_model_to_cpu(m); // another dtype or device: the old copy goes first, so both never hold device memory
    void *copy = NULL;
    lf_model_desc d = describe(m);
    if (api->model_create(&d, dtype, device, &copy) != 0)
        return cuda_failure(api, "moving the model to CUDA");
    m->cuda_model = copy;
    m->cuda_dtype = dtype;
    m->cuda_device = device;
    return LF_OK;
}

void lf_model_to_cpu(lf_model *m) {
    if (m->cuda_model == NULL) return;
    lf_cuda()->model_free(m->cuda_model); // a device copy exists only where the library is loaded
    m->cuda_model = NULL;
}

int lf_model_cuda_refresh(lf_model *m) {
    if (m->cuda_model == NULL) return LF_OK;
    lf_dtype dtype = m->cuda_dtype;
    lf_model_to_cpu(m);
    if (lf_model_cuda_create(m, dtype, m->cuda_device) == LF_OK) return LF_OK;
    char why[768];
    snprintf(why, sizeof why, "%s", lf_error_message());
    return lf_error(lf_error_code(), "%s (the model is on the CPU now)", why);
}

int lf_model_cuda_forward(lf_model *m, float *logits) {
    const lf_cuda_api *api = lf_cuda();
    lf_model_desc d = describe(m);
    if (api->model_forward(m->cuda_model, &d, logits) != 0) return cuda_failure(api, "CUDA forward");
    return LF_OK;
}

int lf_model_cuda_forward_backward(lf_model *m, const float *class_weights, float *logits, float *loss) {
    const lf_cuda_api *api = lf_cuda();
    lf_model_desc d = describe(m);
    if (api->model_forward_backward(m->cuda_model, &d, class_weights, logits, loss) != 0)
        return cuda_failure(api, "CUDA forward and backward");
    return LF_OK;
}

int lf_model_cuda_backward(lf_model *m, const float *dlogits) {
    const lf_cuda_api *api = lf_cuda();
    lf_model_desc d = describe(m);
    if (api->model_backward(m->cuda_model, &d, dlogits) != 0) return cuda_failure(api, "CUDA backward");
    return LF_OK;
}

size_t lf_model_device_bytes(const lf_model *m) {
    return m->cuda_model != NULL ? lf_cuda()->model_device_bytes(m->cuda_model) : 0;
}

int lf_model_cuda_optimizer_begin(lf_model *m, const float *m_moments, const float *v_moments, int max_batch,
                                  int max_len) {
    const lf_cuda_api *api = lf_cuda();
    lf_model_desc d = describe(m);
    if (api->model_reserve(m->cuda_model, max_batch, max_len) != 0)
        return cuda_failure(api, "planning the device memory of the training run");
    if (api->optimizer_begin(m->cuda_model, &d, m_moments, v_moments) != 0)
        return cuda_failure(api, "starting AdamW on CUDA");
    return LF_OK;
}

int lf_model_cuda_optimizer_begin_update(lf_model *m, float loss_scale) {
    const lf_cuda_api *api = lf_cuda();
    if (api->optimizer_begin_update(m->cuda_model, loss_scale) != 0)
        return cuda_failure(api, "starting an update on CUDA");
    return LF_OK;
}

int lf_model_cuda_optimizer_step(lf_model *m, const lf_update *u, double *norm, int *found_inf) {
    const lf_cuda_api *api = lf_cuda();
    if (api->optimizer_step(m->cuda_model, u, norm, found_inf) != 0)
        return cuda_failure(api, "the AdamW update on CUDA");
    return LF_OK;
}

int lf_model_cuda_optimizer_sync(lf_model *m, float *m_moments, float *v_moments) {
    const lf_cuda_api *api = lf_cuda();
    lf_model_desc d = describe(m);
    if (api->optimizer_sync(m->cuda_model, &d, m_moments, v_moments) != 0)
        return cuda_failure(api, "copying the trained params from CUDA");
    return LF_OK;
}

void lf_model_cuda_optimizer_end(lf_model *m) { lf_cuda()->optimizer_end(m->cuda_model); }

int lf_model_cuda_all_reduce(lf_model *m, void *comm, float *loss, double timeout) {
    const lf_cuda_api *api = lf_cuda();
    if (m->cuda_model == NULL) return lf_error(LF_EINVAL, "the NCCL all-reduce needs the model on CUDA");
    if (api->optimizer_all_reduce(m->cuda_model, comm, loss, timeout) != 0)
        return lf_error(LF_ECUDA, "%s", api->last_error());
    return LF_OK;
}

int lf_model_cuda_grads(lf_model *m, float *flat, int download) {
    const lf_cuda_api *api = lf_cuda();
    lf_model_desc d = describe(m);
    if (api->optimizer_grads(m->cuda_model, &d, flat, download) != 0)
        return cuda_failure(api, download ? "downloading the gradients for the all-reduce"
                                          : "uploading the all-reduced gradients");
    return LF_OK;
}
