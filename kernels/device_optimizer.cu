// AdamW on the device for a training run of the host loop (csrc/train/loop.c through
// lf_model_run_* of models/model.c): the params and their moments stay on the
// device from optimizer_begin to optimizer_end, the gradients accumulate there over the
// micro-batches, and an update is grad_norm_clip_cuda + adamw_update_cuda (kernels/adamw.cu, the
// CPU's arithmetic) on the device stream. Per update only the norm comes back; the params and
// moments come back to the host when it asks (optimizer_sync: a checkpoint, an evaluation, the end).
#include <math.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "device_runtime.cuh"

void lf_cuda_optimizer_free(runtime *rt) {
    lf_cuda_optimizer *o = rt->optimizer;
    if (o == NULL) return;
    (void)cudaStreamSynchronize(rt->dm.stream); // nothing in flight uses what goes
    (void)cudaFree(o->m);
    (void)cudaFree(o->v);
    (void)cudaFree(o->tensors);
    (void)cudaFree(o->norm);
    lf_cuda_pinned_free(o->host_norm);
    free(o);
    rt->optimizer = NULL;
}

// flat (sum of the params' numel,) in param order on the host <-> dm.params' layout on the device
// (the moments, the gradients), through the pinned host_grads staging (free during a run: the
// gradients stay up); what names it in a failure
static int upload_flat(runtime *rt, const lf_model_desc *m, float *device, const float *flat,
                       const char *what) {
    size_t at = 0;
    for (int i = 0; i < m->n_params; i++) {
        memcpy(rt->host_grads + rt->dm.param_offset[i], flat + at,
               (size_t)m->params[i].numel * sizeof(float));
        at += (size_t)m->params[i].numel;
    }
    int rc = lf_cuda_checked(cudaMemcpyAsync(device, rt->host_grads, rt->param_floats * sizeof(float),
                                             cudaMemcpyHostToDevice, rt->dm.stream),
                             what);
    int sync = lf_cuda_checked(cudaStreamSynchronize(rt->dm.stream), what);
    return rc != 0 ? rc : sync;
}

static int download_flat(runtime *rt, const lf_model_desc *m, const float *device, float *flat,
                         const char *what) {
    int rc = lf_cuda_checked(cudaMemcpyAsync(rt->host_grads, device, rt->param_floats * sizeof(float),
                                             cudaMemcpyDeviceToHost, rt->dm.stream),
                             what);
    int sync = lf_cuda_checked(cudaStreamSynchronize(rt->dm.stream), what);
    if (rc != 0 || sync != 0) return rc != 0 ? rc : sync;
    size_t at = 0;
    for (int i = 0; i < m->n_params; i++) {
        memcpy(flat + at, rt->host_grads + rt->dm.param_offset[i],
               (size_t)m->params[i].numel * sizeof(float));
        at += (size_t)m->params[i].numel;
    }
    return 0;
}

// the table of every param's device tensors, built on the host and copied up once
static int upload_tensor_table(runtime *rt, const lf_model_desc *m) {
    lf_cuda_optimizer *o = rt->optimizer;
    size_t n = m->n_params > 0 ? (size_t)m->n_params : 1;
    lf_adamw_tensor *table = (lf_adamw_tensor *)calloc(n, sizeof *table);
    if (table == NULL)
        return lf_cuda_set_error((int)cudaErrorMemoryAllocation, "out of host memory for the AdamW table");
    for (int i = 0; i < m->n_params; i++) {
        size_t at = rt->dm.param_offset[i];
        table[i] = {rt->dm.params + at, rt->dm.grads + at,  o->m + at,
                    o->v + at,          m->params[i].numel, m->params[i].no_decay};
    }
    int rc = lf_cuda_checked(
        cudaMemcpyAsync(o->tensors, table, n * sizeof *table, cudaMemcpyHostToDevice, rt->dm.stream),
        "uploading the AdamW table");
    int sync = lf_cuda_checked(cudaStreamSynchronize(rt->dm.stream), "uploading the AdamW table");
    free(table);
    return rc != 0 ? rc : sync;
}

int lf_cuda_optimizer_begin(void *cuda_model, const lf_model_desc *m, const float *m_moments,
                            const float *v_moments) {
    runtime *rt = (runtime *)cuda_model;
    int entered = lf_cuda_enter(rt);
    if (entered != 0) return entered;
    int described = lf_cuda_describe(rt, m);
    if (described != 0) return described;
    if (rt->optimizer != NULL)
        return lf_cuda_set_error((int)cudaErrorInvalidValue,
                                 "a training run on the device is already going on");
    rt->optimizer = (lf_cuda_optimizer *)calloc(1, sizeof(lf_cuda_optimizer));
    if (rt->optimizer == NULL) return lf_cuda_set_error((int)cudaErrorMemoryAllocation, "out of host memory");
    lf_cuda_optimizer *o = rt->optimizer;
    o->loss_scale = 1.0f;
    size_t bytes = rt->param_floats * sizeof(float);
    size_t n = m->n_params > 0 ? (size_t)m->n_params : 1;
    int rc = lf_cuda_device_alloc((void **)&o->m, bytes, "the AdamW first moments");
    if (rc == 0) rc = lf_cuda_device_alloc((void **)&o->v, bytes, "the AdamW second moments");
    if (rc == 0)
        rc = lf_cuda_device_alloc((void **)&o->tensors, n * sizeof(lf_adamw_tensor), "the AdamW table");
    if (rc == 0)
        rc = lf_cuda_device_alloc((void **)&o->norm, sizeof(lf_grad_norm_state), "the gradient norm");
    if (rc == 0)
        rc = lf_cuda_pinned_alloc((void **)&o->host_norm, sizeof(lf_grad_norm_state), "the gradient norm");
    if (rc == 0) rc = upload_flat(rt, m, o->m, m_moments, "uploading the AdamW moments");
    if (rc == 0) rc = upload_flat(rt, m, o->v, v_moments, "uploading the AdamW moments");
    if (rc == 0) rc = upload_tensor_table(rt, m);
    if (rc == 0) rc = lf_cuda_upload_params(rt, m);
    if (rc == 0)
        rc = lf_cuda_checked(cudaMemsetAsync(rt->dm.grads, 0, bytes, rt->dm.stream), "zeroing the gradients");
    if (rc == 0) rc = lf_cuda_checked(cudaStreamSynchronize(rt->dm.stream), "starting AdamW on the device");
    if (rc != 0) lf_cuda_optimizer_free(rt);
    return rc;
}

// m: the call's description of the host model, or NULL when the call reads none
static int check_running(runtime *rt, const lf_model_desc *m) {
    if (rt->optimizer == NULL)
        return lf_cuda_set_error((int)cudaErrorInvalidValue, "no training run on the device for this model");
    return m != NULL ? lf_cuda_describe(rt, m) : 0;
}

int lf_cuda_optimizer_begin_update(void *cuda_model, float loss_scale) {
    runtime *rt = (runtime *)cuda_model;
    int entered = lf_cuda_enter(rt);
    if (entered != 0) return entered;
    int rc = check_running(rt, NULL);
    if (rc == 0 && !(loss_scale > 0.0f && isfinite(loss_scale)))
        rc = lf_cuda_set_error((int)cudaErrorInvalidValue, "loss scale %g is not a positive number",
                               loss_scale);
    if (rc == 0) rt->optimizer->loss_scale = loss_scale;
    if (rc == 0 && rt->param_floats > 0)
        rc =
            lf_cuda_checked(cudaMemsetAsync(rt->dm.grads, 0, rt->param_floats * sizeof(float), rt->dm.stream),
                            "zeroing the gradients");
    return rc;
}

int lf_cuda_optimizer_step(void *cuda_model, const lf_update *u, double *norm, int *found_inf) {
    runtime *rt = (runtime *)cuda_model;
    int entered = lf_cuda_enter(rt);
    if (entered != 0) return entered;
    int rc = check_running(rt, NULL);
    if (rc != 0) return rc;
    lf_cuda_optimizer *o = rt->optimizer;
    const int n = rt->desc.n_params;
    rc = lf_cuda_checked(grad_norm_clip_cuda(o->norm, o->tensors, n, u, rt->dm.stream),
                         "the gradient norm and clipping");
    if (rc == 0)
        rc = lf_cuda_checked(adamw_update_cuda(o->tensors, n, &u->adam, u->step, o->norm, rt->dm.stream),
                             "the AdamW update");
    if (rc == 0)
        rc = lf_cuda_checked(cudaMemcpyAsync(o->host_norm, o->norm, offsetof(lf_grad_norm_state, partial),
                                             cudaMemcpyDeviceToHost, rt->dm.stream),
                             "downloading the gradient norm");
    int sync = lf_cuda_checked(cudaStreamSynchronize(rt->dm.stream), "the AdamW update on the device");
    if (rc != 0 || sync != 0) return rc != 0 ? rc : sync;
    *norm = o->host_norm->norm;
    *found_inf = o->host_norm->found_inf;
    return 0;
}

int lf_cuda_optimizer_sync(void *cuda_model, const lf_model_desc *m, float *m_moments, float *v_moments) {
    runtime *rt = (runtime *)cuda_model;
    int entered = lf_cuda_enter(rt);
    if (entered != 0) return entered;
    int rc = check_running(rt, m);
    if (rc == 0) rc = lf_cuda_download_params(rt, m);
    if (rc == 0) rc = download_flat(rt, m, rt->optimizer->m, m_moments, "downloading the AdamW moments");
    if (rc == 0) rc = download_flat(rt, m, rt->optimizer->v, v_moments, "downloading the AdamW moments");
    return rc;
}

int lf_cuda_optimizer_grads(void *cuda_model, const lf_model_desc *m, float *flat, int download) {
    runtime *rt = (runtime *)cuda_model;
    int entered = lf_cuda_enter(rt);
    if (entered != 0) return entered;
    int rc = check_running(rt, m);
    if (rc != 0) return rc;
    if (download)
        return download_flat(rt, m, rt->dm.grads, flat, "downloading the gradients for the all-reduce");
    return upload_flat(rt, m, rt->dm.grads, flat, "uploading the reduced gradients");
}

void lf_cuda_optimizer_end(void *cuda_model) {
    (void)cudaSetDevice(((runtime *)cuda_model)->device);
    lf_cuda_optimizer_free((runtime *)cuda_model);
}
