#include "train/loop.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "train/clip.h"
#include "train/loss_scale.h"
#include "train/schedule.h"

int64_t lf_batches_per_epoch(int64_t n, int batch_size, int drop_last) {
    return drop_last ? n / batch_size : (n + batch_size - 1) / batch_size;
}

int64_t lf_updates_per_epoch(int64_t n, int batch_size, int drop_last, int grad_accum) {
    int64_t batches = lf_batches_per_epoch(n, batch_size, drop_last);
    int64_t updates = batches / grad_accum + (batches % grad_accum > 0);
    return updates > 1 ? updates : 1;
}

int lf_dataset_check(const lf_dataset *d, const char *what, int vocab_size, int num_labels) {
    if (d->n <= 0) return lf_error(LF_EINVAL, "%s is empty", what);
    for (int64_t i = 0; i < d->n; i++) {
        if (d->offsets[i + 1] <= d->offsets[i])
            return lf_error(LF_EINVAL, "%s: example %lld has no tokens", what, (long long)i);
        if (d->labels && (d->labels[i] < 0 || d->labels[i] >= num_labels))
            return lf_error(LF_EINVAL, "%s: example %lld has label %d, outside [0, %d) (num_labels=%d)", what,
                            (long long)i, d->labels[i], num_labels, num_labels);
        for (int64_t t = d->offsets[i]; t < d->offsets[i + 1]; t++)
            if (d->ids[t] < 0 || d->ids[t] >= vocab_size)
                return lf_error(LF_EINVAL,
                                "%s: example %lld has token id %d, outside the model's vocabulary [0, %d): "
                                "the tokenizer and the model's vocab_size disagree",
                                what, (long long)i, d->ids[t], vocab_size);
    }
    return LF_OK;
}

static int64_t longest_example(const lf_dataset *d) {
    int64_t longest = 0;
    for (int64_t i = 0; i < d->n; i++)
        if (d->offsets[i + 1] - d->offsets[i] > longest) longest = d->offsets[i + 1] - d->offsets[i];
    return longest;
}

// Buffers of one padded batch, planned once for the longest example.
typedef struct {
    int64_t *ids, *mask, *labels;
    float *logits;
    int64_t *order;
} batch_buffers;

static void buffers_free(batch_buffers *b) {
    free(b->ids);
    free(b->mask);
    free(b->labels);
    free(b->logits);
    free(b->order);
}

static int buffers_alloc(batch_buffers *b, const lf_dataset *d, int batch_size, int num_labels) {
    int64_t cells = (int64_t)batch_size * longest_example(d);
    b->ids = malloc(sizeof(int64_t) * cells);
    b->mask = malloc(sizeof(int64_t) * cells);
    b->labels = malloc(sizeof(int64_t) * batch_size);
    b->logits = malloc(sizeof(float) * batch_size * num_labels);
    b->order = malloc(sizeof(int64_t) * d->n);
    if (!b->ids || !b->mask || !b->labels || !b->logits || !b->order) {
        buffers_free(b);
        return lf_error(LF_ENOMEM, "out of memory for a batch of %d x %lld tokens", batch_size,
                        (long long)(cells / batch_size));
    }
    return LF_OK;
}

// order: (n,) the examples of epoch `epoch`, a Fisher-Yates shuffle keyed by (seed, epoch)
static void shuffle_order(int64_t *order, int64_t n, uint64_t seed, int64_t epoch) {
    uint64_t x = seed * 0x9e3779b97f4a7c15ULL + (uint64_t)epoch * 0xbf58476d1ce4e5b9ULL + 1;
    for (int64_t i = 0; i < n; i++)
        order[i] = i;
    for (int64_t i = n - 1; i > 0; i--) {
        x += 0x9e3779b97f4a7c15ULL; // splitmix64
        uint64_t z = x;
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
        z ^= z >> 31;
        int64_t j = (int64_t)(z % (uint64_t)(i + 1));
        int64_t t = order[i];
        order[i] = order[j];
        order[j] = t;
    }
}

// Loads examples order[first .. first+count-1] into the model as a padded batch (B = count, L).
static int load_batch(lf_trainable *model, const lf_dataset *d, batch_buffers *b, const int64_t *order,
                      int64_t first, int count, lf_padded_batch *padded) {
    int64_t L = 0;
    for (int r = 0; r < count; r++) {
        int64_t i = order[first + r], len = d->offsets[i + 1] - d->offsets[i];
        if (len > L) L = len;
    }
    for (int r = 0; r < count; r++) {
        int64_t i = order[first + r], start = d->offsets[i], len = d->offsets[i + 1] - start;
        for (int64_t t = 0; t < L; t++) {
            b->ids[r * L + t] = t < len ? d->ids[start + t] : model->pad_token_id;
            b->mask[r * L + t] = t < len;
        }
        if (d->labels) b->labels[r] = d->labels[i];
    }
    *padded = (lf_padded_batch){b->ids, b->mask, b->labels, count, (int)L};
    return model->load_batch(model->self, b->ids, b->mask, d->labels ? b->labels : NULL, count, (int)L);
}

// an update begins: gradients zeroed (on the device: with the loss scale of its backward passes)
static int begin_update(lf_trainable *model, const lf_train_config *cfg, const lf_train_state *st) {
    if (model->device)
        return model->device->begin_update(model->self, cfg->loss_scaling ? (float)st->loss_scale : 1.0f);
    for (int p = 0; p < model->n_params; p++)
        memset(model->params[p].grad, 0, sizeof(float) * model->params[p].numel);
    return LF_OK;
}

static void scale_grads(lf_trainable *model, float scale) {
    for (int p = 0; p < model->n_params; p++)
        for (int64_t i = 0; i < model->params[p].numel; i++)
            model->params[p].grad[i] *= scale;
}

// clips by the global norm (cfg->max_grad_norm > 0) and returns the norm before clipping
static double clip_grads(lf_trainable *model, double max_grad_norm) {
    float *grads[model->n_params > 0 ? model->n_params : 1];
    int64_t sizes[model->n_params > 0 ? model->n_params : 1];
    for (int p = 0; p < model->n_params; p++) {
        grads[p] = model->params[p].grad;
        sizes[p] = model->params[p].numel;
    }
    double norm = grad_global_norm(grads, sizes, model->n_params);
    if (max_grad_norm > 0) grad_clip(grads, sizes, model->n_params, norm, max_grad_norm);
    return norm;
}

// updates AdamW and the schedule have made: skipped ones (loss scaling) do not count
static int64_t optimizer_steps(const lf_train_state *st) { return st->global_step - st->skipped_steps; }

static double scheduled_lr(const lf_train_config *cfg, const lf_train_state *st) {
    return cfg->adam.lr *
           lr_schedule_factor(cfg->schedule, optimizer_steps(st), cfg->warmup_steps, cfg->max_steps);
}

static double optimizer_step(lf_trainable *model, const lf_train_config *cfg, lf_train_state *st) {
    double lr = scheduled_lr(cfg, st);
    int64_t offset = 0;
    for (int p = 0; p < model->n_params; p++) {
        lf_trainable_param *param = &model->params[p];
        lf_adamw_hparams h = cfg->adam;
        h.lr = lr;
        if (param->no_decay) h.weight_decay = 0.0;
        adamw_update(param->data, param->grad, st->m + offset, st->v + offset, param->numel, &h,
                     optimizer_steps(st) + 1);
        offset += param->numel;
    }
    return lr;
}

// The update of the micro-batches' gradients (their sum, divided by micro): clipping and AdamW,
// on the host or on the model's device. Fills ev's grad_norm and learning_rate.
static int apply_update(lf_trainable *model, const lf_train_config *cfg, lf_train_state *st, int64_t micro,
                        lf_train_event *ev) {
    if (model->device == NULL) {
        if (micro > 1) scale_grads(model, 1.0f / (float)micro);
        ev->grad_norm = clip_grads(model, cfg->max_grad_norm);
        ev->learning_rate = optimizer_step(model, cfg, st);
        return LF_OK;
    }
    lf_adamw_hparams h = cfg->adam;
    h.lr = ev->learning_rate = scheduled_lr(cfg, st);
    // the mean over the micro-batches and the loss scale undone, in one factor for the device
    float grad_scale = (float)(1.0 / ((double)micro * (cfg->loss_scaling ? st->loss_scale : 1.0)));
    int found_inf = 0;
    int rc = model->device->update(model->self, &h, optimizer_steps(st) + 1, grad_scale, cfg->max_grad_norm,
                                   cfg->loss_scaling, &ev->grad_norm, &found_inf);
    if (rc != LF_OK || !cfg->loss_scaling) return rc;
    if (found_inf) st->skipped_steps++;
    loss_scale_update(&st->loss_scale, &st->growth_tracker, found_inf);
    return LF_OK;
}

// the device's params and moments back into the host's before Python reads them (needed: the
// callback saves, evaluates or ends the run), unless they were copied since the last update
static int sync_device(lf_trainable *model, lf_train_state *st, int needed, int64_t *synced_step) {
    if (model->device == NULL || !needed || *synced_step == st->global_step) return LF_OK;
    int rc = model->device->sync(model->self, st->m, st->v);
    if (rc == LF_OK) *synced_step = st->global_step;
    return rc;
}

static int callback_reads_params(const lf_train_event *ev) {
    return ev->should_save || ev->should_evaluate || ev->is_last;
}

static int due(int every, int64_t interval, int64_t step) {
    return every == LF_EVERY_STEPS && interval > 0 && step % interval == 0;
}

static void take_log_loss(lf_train_state *st, lf_train_event *ev) {
    int64_t steps = st->global_step - st->last_log_step;
    ev->loss = steps > 0 ? st->loss_since_log / (double)steps : 0.0;
    st->loss_since_log = 0.0;
    st->last_log_step = st->global_step;
}

// the caller's loss (cfg->batch_loss) of the loaded micro-batch, as the model's loss of its logits
typedef struct {
    const lf_train_config *cfg;
    const lf_padded_batch *batch;
} batch_loss_call;

static int call_batch_loss(void *ctx, const float *logits, float *dlogits, float *loss) {
    const batch_loss_call *c = ctx;
    return c->cfg->batch_loss(c->cfg->batch_loss_ctx, c->batch, logits, dlogits, loss);
}

// One update: grad_accum micro-batches (fewer at the end of an epoch). Its loss and gradient are the
// mean over the micro-batches it has, as HF's Trainer divides by len(batch_samples).
static int train_update(lf_trainable *model, const lf_dataset *d, const lf_train_config *cfg,
                        lf_train_state *st, batch_buffers *b, int64_t batches, double *loss_out,
                        int64_t *micro_out) {
    int64_t end = (st->batch_in_epoch / cfg->grad_accum + 1) * cfg->grad_accum;
    if (end > batches) end = batches;
    const int64_t micro = end - st->batch_in_epoch;
    double step_loss = 0.0;
    int rc = begin_update(model, cfg, st);
    if (rc != LF_OK) return rc;
    for (; st->batch_in_epoch < end; st->batch_in_epoch++) {
        int64_t first = st->batch_in_epoch * cfg->batch_size;
        int count = (int)(d->n - first < cfg->batch_size ? d->n - first : cfg->batch_size);
        lf_padded_batch padded;
        rc = load_batch(model, d, b, b->order, first, count, &padded);
        if (rc != LF_OK) return rc;
        model->set_mode(model->self, 1, (uint64_t)st->micro_steps++);
        float loss = 0.0f;
        batch_loss_call call = {cfg, &padded};
        rc = model->forward_backward(model->self, cfg->class_weights,
                                     cfg->batch_loss ? call_batch_loss : NULL, &call, b->logits, &loss);
        if (rc != LF_OK) return rc;
        step_loss += (double)loss / (double)micro;
    }
    *loss_out = step_loss;
    *micro_out = micro;
    return LF_OK;
}

static int check_interval(const char *name, int every, int64_t steps) {
    if (every < LF_EVERY_NO || every > LF_EVERY_EPOCH)
        return lf_error(LF_EINVAL, "%s strategy %d is not no (0), steps (1) or epoch (2)", name, every);
    if (every == LF_EVERY_STEPS && steps < 1)
        return lf_error(LF_EINVAL, "%s every %lld steps: the interval must be >= 1", name, (long long)steps);
    return LF_OK;
}

static int check_config(const lf_trainable *model, const lf_dataset *d, const lf_train_config *cfg) {
    if (cfg->batch_size < 1 || cfg->grad_accum < 1)
        return lf_error(LF_EINVAL, "batch_size (%d) and grad_accum (%d) must be >= 1", cfg->batch_size,
                        cfg->grad_accum);
    if (cfg->max_steps < 0 || cfg->warmup_steps < 0)
        return lf_error(LF_EINVAL, "max_steps (%lld) and warmup_steps (%lld) must be >= 0",
                        (long long)cfg->max_steps, (long long)cfg->warmup_steps);
    const lf_adamw_hparams *h = &cfg->adam;
    if (!(h->lr >= 0) || !(h->eps >= 0) || !(h->weight_decay >= 0) || !(h->beta1 >= 0 && h->beta1 < 1) ||
        !(h->beta2 >= 0 && h->beta2 < 1))
        return lf_error(
            LF_EINVAL,
            "AdamW: lr (%g), eps (%g), weight_decay (%g) must be >= 0 and betas (%g, %g) in [0, 1)", h->lr,
            h->eps, h->weight_decay, h->beta1, h->beta2);
    int rc;
    if ((rc = check_interval("logging", cfg->log_every, cfg->log_steps)) != LF_OK ||
        (rc = check_interval("eval", cfg->eval_every, cfg->eval_steps)) != LF_OK ||
        (rc = check_interval("save", cfg->save_every, cfg->save_steps)) != LF_OK)
        return rc;
    if (cfg->drop_last && d->n < cfg->batch_size)
        return lf_error(LF_EINVAL,
                        "dataloader_drop_last with %lld examples and batch size %d leaves no batch",
                        (long long)d->n, cfg->batch_size);
    if (!d->labels) return lf_error(LF_EINVAL, "the training dataset has no labels");
    if (cfg->batch_loss && model->device)
        return lf_error(LF_EINVAL,
                        "a loss computed outside lorafast (a compute_loss override) runs on the CPU "
                        "only; on CUDA pass class_weights= instead");
    if (cfg->loss_scaling && model->device == NULL)
        return lf_error(LF_EINVAL, "fp16 loss scaling needs the model on CUDA (the CPU computes in float32)");
    return lf_dataset_check(d, "train_dataset", model->vocab_size, model->num_labels);
}

int lf_train_run(lf_trainable *model, const lf_dataset *d, const lf_train_config *cfg, lf_train_state *st,
                 lf_train_callback callback, void *ctx) {
    int rc = check_config(model, d, cfg);
    if (rc != LF_OK) return rc;
    int64_t batches = lf_batches_per_epoch(d->n, cfg->batch_size, cfg->drop_last);
    // a resumed state: at an update boundary inside an epoch, counters consistent
    if (st->global_step < 0 || st->epoch < 0 || st->micro_steps < 0 || st->batch_in_epoch < 0 ||
        st->batch_in_epoch > batches ||
        (st->batch_in_epoch % cfg->grad_accum != 0 && st->batch_in_epoch != batches) ||
        st->last_log_step < 0 || st->last_log_step > st->global_step || st->skipped_steps < 0 ||
        st->skipped_steps > st->global_step || st->growth_tracker < 0 ||
        (cfg->loss_scaling && !(st->loss_scale > 0 && isfinite(st->loss_scale))))
        return lf_error(
            LF_EINVAL,
            "loop state does not fit this dataset and batching: global_step %lld, epoch %lld, "
            "batch_in_epoch %lld of %lld, micro_steps %lld, last_log_step %lld, skipped_steps %lld, "
            "growth_tracker %lld, loss_scale %g",
            (long long)st->global_step, (long long)st->epoch, (long long)st->batch_in_epoch,
            (long long)batches, (long long)st->micro_steps, (long long)st->last_log_step,
            (long long)st->skipped_steps, (long long)st->growth_tracker, st->loss_scale);
    batch_buffers b = {0};
    if ((rc = buffers_alloc(&b, d, cfg->batch_size, model->num_labels)) != LF_OK) return rc;
    if (model->device && (rc = model->device->begin(model->self, st->m, st->v, cfg->batch_size,
                                                    (int)longest_example(d))) != LF_OK) {
        buffers_free(&b);
        return rc;
    }
    int stop = 0;
    int64_t synced_step = -1; // global_step at the last copy of the device's params to the host
    while (!stop && st->global_step < cfg->max_steps) {
        shuffle_order(b.order, d->n, cfg->seed, st->epoch);
        while (!stop && st->batch_in_epoch < batches && st->global_step < cfg->max_steps) {
            double loss = 0.0;
            int64_t micro = 0;
            lf_train_event ev = {0};
            if ((rc = train_update(model, d, cfg, st, &b, batches, &loss, &micro)) != LF_OK ||
                (rc = apply_update(model, cfg, st, micro, &ev)) != LF_OK)
                goto done;
            st->global_step++;
            st->loss_total += loss;
            st->loss_since_log += loss;
            ev.global_step = st->global_step;
            ev.epoch = (double)st->epoch + (double)st->batch_in_epoch / (double)batches;
            ev.is_last = st->global_step >= cfg->max_steps;
            // HF's DefaultFlowCallback.on_step_end: at the last step, step strategies evaluate and save
            ev.should_log = due(cfg->log_every, cfg->log_steps, st->global_step) ||
                            (cfg->log_first_step && st->global_step == 1);
            ev.should_evaluate = due(cfg->eval_every, cfg->eval_steps, st->global_step) ||
                                 (ev.is_last && cfg->eval_every == LF_EVERY_STEPS);
            ev.should_save = due(cfg->save_every, cfg->save_steps, st->global_step) ||
                             (ev.is_last && cfg->save_every == LF_EVERY_STEPS);
            if (ev.should_log) take_log_loss(st, &ev);
            if ((rc = sync_device(model, st, callback_reads_params(&ev), &synced_step)) != LF_OK) goto done;
            int r = callback(ctx, &ev);
            if (r < 0) rc = LF_EINTR;
            if (r != 0) goto done;
        }
        lf_train_event ev = {0};
        ev.epoch_end = 1;
        ev.epoch = (double)st->epoch + (double)st->batch_in_epoch / (double)batches;
        ev.global_step = st->global_step;
        ev.is_last = st->global_step >= cfg->max_steps;
        ev.should_log = cfg->log_every == LF_EVERY_EPOCH && st->global_step > st->last_log_step;
        ev.should_evaluate = cfg->eval_every == LF_EVERY_EPOCH;
        ev.should_save = cfg->save_every == LF_EVERY_EPOCH;
        if (ev.should_log) take_log_loss(st, &ev);
        st->epoch++;
        st->batch_in_epoch = 0;
        if ((rc = sync_device(model, st, callback_reads_params(&ev), &synced_step)) != LF_OK) break;
        int r = callback(ctx, &ev);
        if (r < 0) rc = LF_EINTR;
        if (r != 0) break;
    }
done:
    if (model->device) { // the params and moments the run reached, even when it stopped on an error
        int synced = sync_device(model, st, 1, &synced_step);
        model->device->end(model->self);
        if (rc == LF_OK) rc = synced;
    }
    buffers_free(&b);
    return rc;
}

int lf_predict(lf_trainable *model, const lf_dataset *d, int batch_size, const float *class_weights,
               float *logits, double *loss) {
    if (batch_size < 1) return lf_error(LF_EINVAL, "eval batch size must be >= 1, got %d", batch_size);
    if (loss && !d->labels) return lf_error(LF_EINVAL, "an eval loss needs labels");
    int rc = lf_dataset_check(d, "eval_dataset", model->vocab_size, model->num_labels);
    if (rc != LF_OK) return rc;
    batch_buffers b = {0};
    if ((rc = buffers_alloc(&b, d, batch_size, model->num_labels)) != LF_OK) return rc;
    for (int64_t i = 0; i < d->n; i++)
        b.order[i] = i;
    double total = 0.0;
    model->set_mode(model->self, 0, 0);
    for (int64_t first = 0; first < d->n && rc == LF_OK; first += batch_size) {
        int count = (int)(d->n - first < batch_size ? d->n - first : batch_size);
        lf_padded_batch padded;
        if ((rc = load_batch(model, d, &b, b.order, first, count, &padded)) != LF_OK) break;
        float batch_loss = 0.0f;
        rc = model->forward(model->self, class_weights, logits + first * model->num_labels,
                            loss ? &batch_loss : NULL);
        total += (double)batch_loss * count;
    }
    if (loss) *loss = total / (double)d->n;
    buffers_free(&b);
    return rc;
}
