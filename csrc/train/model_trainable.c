#include "train/model_trainable.h"

#include <stdlib.h>

#include "core/error.h"
#include "ops/crossentropy.h"

typedef struct {
    lf_trainable t;
    lf_model *model;
} model_trainable;

static lf_model *model_of(void *self) { return ((model_trainable *)self)->model; }

// ids, mask: (B, L) padded batch, labels: (B,) or NULL -> the model's packed batch
static int mt_load_batch(void *self, const int64_t *ids, const int64_t *mask, const int64_t *labels, int B,
                         int L) {
    return lf_unpad_batch(model_of(self), ids, mask, NULL, labels, B, L);
}

// logits: (B, num_labels); loss: the class-weighted cross-entropy of the loaded labels, or NULL
static int mt_forward(void *self, const float *class_weights, float *logits, float *loss) {
    lf_model *m = model_of(self);
    int rc = lf_model_forward(m, logits);
    if (rc != LF_OK || loss == NULL) return rc;
    *loss = crossentropy_forward_backward(NULL, logits, m->batch.labels, class_weights, m->batch.B,
                                          m->cfg.num_labels);
    return LF_OK;
}

static int mt_forward_backward(void *self, const float *class_weights, lf_logits_loss_fn loss_fn,
                               void *loss_ctx, float *logits, float *loss) {
    return lf_model_forward_backward(model_of(self), class_weights, loss_fn, loss_ctx, logits, loss);
}

// dropout on/off; the dropout streams of the next forward are keyed by (model seed, step)
static void mt_set_mode(void *self, int training, uint64_t step) {
    lf_model *m = model_of(self);
    m->training = training;
    m->step = step;
}

static int mt_device_begin(void *self, const float *m, const float *v, int max_batch, int max_len) {
    return lf_model_cuda_optimizer_begin(model_of(self), m, v, max_batch, max_len);
}
static int mt_device_begin_update(void *self, float loss_scale) {
    return lf_model_cuda_optimizer_begin_update(model_of(self), loss_scale);
}
static int mt_device_update(void *self, const lf_adamw_hparams *h, int64_t step, float grad_scale,
                            double max_grad_norm, int skip_nonfinite, double *norm, int *found_inf) {
    return lf_model_cuda_optimizer_step(model_of(self), h, step, grad_scale, max_grad_norm, skip_nonfinite,
                                        norm, found_inf);
}
static int mt_device_sync(void *self, float *m, float *v) {
    return lf_model_cuda_optimizer_sync(model_of(self), m, v);
}
static void mt_device_end(void *self) { lf_model_cuda_optimizer_end(model_of(self)); }

static const lf_trainable_device cuda_optimizer = {mt_device_begin, mt_device_begin_update, mt_device_update,
                                                   mt_device_sync, mt_device_end};

lf_trainable *model_trainable_create(lf_model *m) {
    model_trainable *mt = calloc(1, sizeof *mt);
    lf_trainable_param *params = calloc(m->n_params > 0 ? (size_t)m->n_params : 1, sizeof *params);
    if (mt == NULL || params == NULL) {
        free(mt);
        free(params);
        lf_error(LF_ENOMEM, "out of memory for the trainable table of %d params", m->n_params);
        return NULL;
    }
    for (int i = 0; i < m->n_params; i++) {
        const lf_param *p = &m->params[i];
        params[i] = (lf_trainable_param){p->name, p->data, p->grad, p->numel, p->no_decay};
    }
    mt->model = m;
    mt->t = (lf_trainable){mt,
                           m->cfg.num_labels,
                           m->cfg.pad_token_id,
                           m->cfg.vocab_size,
                           m->n_params,
                           params,
                           mt_load_batch,
                           mt_forward,
                           mt_forward_backward,
                           mt_set_mode,
                           m->cuda_model != NULL ? &cuda_optimizer : NULL};
    return &mt->t;
}

void model_trainable_free(lf_trainable *t) {
    if (t == NULL) return;
    free(t->params);
    free(t->self);
}
