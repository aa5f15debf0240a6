#include "train/loop.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "ops/crossentropy.h"
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

static int64_t length_of(const lf_dataset *d, int64_t i) { return d->offsets[i + 1] - d->offsets[i]; }

static int64_t longest_example(const lf_dataset *d) {
    int64_t longest = 0;
    for (int64_t i = 0; i < d->n; i++)
        if (length_of(d, i) > longest) longest = length_of(d, i);
    return longest;
}

static int descending(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x < y) - (x > y);
}

// the most tokens any batch of up to batch_size examples can hold: its longest examples together
static int64_t most_batch_tokens(const lf_dataset *d, int batch_size, int64_t *scratch) {
    for (int64_t i = 0; i < d->n; i++)
        scratch[i] = length_of(d, i);
    qsort(scratch, (size_t)d->n, sizeof *scratch, descending);
    int64_t total = 0;
    for (int64_t i = 0; i < d->n && i < batch_size; i++)
        total += scratch[i];
    return total;
}

// What a run needs besides the model: the logits of a batch and the order of the examples.
typedef struct {
    float *logits;
    int64_t *order;
} batch_buffers;

static void buffers_free(batch_buffers *b) {
    free(b->logits);
    free(b->order);
}

// epoch: the examples of an epoch (d->n, or a data parallel rank's epoch_size)
static int buffers_alloc(batch_buffers *b, const lf_dataset *d, int64_t epoch, int batch_size,
                         int num_labels) {
    int64_t rows = epoch < batch_size ? epoch : batch_size; // a batch never holds more than the epoch
    int64_t order = epoch > d->n ? epoch : d->n;            // also most_batch_tokens' scratch
    b->logits = malloc(sizeof(float) * (size_t)(rows > 0 ? rows : 1) * num_labels);
    b->order = malloc(sizeof(int64_t) * (size_t)(order > 0 ? order : 1));
    if (!b->logits || !b->order) {
        buffers_free(b);
        return lf_error(LF_ENOMEM,
                        "out of memory for the logits of a batch of %lld and the order of %lld examples",
                        (long long)rows, (long long)order);
    }
    return LF_OK;
}

// the examples of one epoch: the dataset, or a data parallel rank's share
static int64_t epoch_examples(const lf_dataset *d, const lf_train_config *cfg) {
    return cfg->epoch_order ? cfg->epoch_size : d->n;
}

// memory for every batch of the run planned before the first (on the model's device)
static int plan_run(lf_model *model, const lf_dataset *d, const lf_train_config *cfg, lf_train_state *st,
                    batch_buffers *b) {
    int64_t tokens = most_batch_tokens(d, cfg->batch_size, b->order), longest = longest_example(d);
    if (tokens > INT32_MAX / 4)
        return lf_error(LF_EINVAL, "batches of up to %lld tokens are too large", (long long)tokens);
    int64_t epoch = epoch_examples(d, cfg);
    int max_batch = epoch < cfg->batch_size ? (int)epoch : cfg->batch_size;
    int rc = lf_model_run_begin(model, st->m, st->v, max_batch, (int)tokens, (int)longest, cfg->loss_scaling,
                                cfg->batch_loss != NULL);
    if (rc == LF_OK && cfg->grad_reduce_device && model->cuda_model == NULL)
        rc = lf_error(LF_EINVAL,
                      "the gradients can be all-reduced on the device (NCCL) only for a model on CUDA");
    return rc == LF_OK && cfg->grad_reduce ? lf_model_reduce_begin(model) : rc;
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

// order: (n,) the examples of epoch `epoch`: the caller's (data parallel), checked, or the shuffle
static int epoch_order(const lf_dataset *d, const lf_train_config *cfg, int64_t *order, int64_t n,
                       int64_t epoch) {
    if (!cfg->epoch_order) {
        shuffle_order(order, n, cfg->seed, epoch);
        return LF_OK;
    }
    int rc = cfg->epoch_order(cfg->epoch_order_ctx, epoch, order, n);
    for (int64_t i = 0; rc == LF_OK && i < n; i++)
        if (order[i] < 0 || order[i] >= d->n)
            rc = lf_error(LF_EINVAL, "the order of epoch %lld holds example %lld at %lld, outside [0, %lld)",
                          (long long)epoch, (long long)order[i], (long long)i, (long long)d->n);
    return rc;
}

// updates AdamW and the schedule have made: skipped ones (loss scaling) do not count
static int64_t optimizer_steps(const lf_train_state *st) { return st->global_step - st->skipped_steps; }

static double scheduled_lr(const lf_train_config *cfg, const lf_train_state *st) {
    return cfg->adam.lr *
           lr_schedule_factor(cfg->schedule, optimizer_steps(st), cfg->warmup_steps, cfg->max_steps);
}

// The update of the micro-batches' gradients (their sum, divided by micro): clipping and AdamW,
// wherever the model computes. Fills ev's grad_norm and learning_rate.
static int apply_update(lf_model *model, const lf_train_config *cfg, lf_train_state *st, int64_t micro,
                        double *loss, lf_train_event *ev) {
    int rc = cfg->grad_reduce ? lf_model_reduce_grads(model, cfg->grad_reduce, cfg->grad_reduce_ctx,
                                                      cfg->grad_reduce_device, loss)
                              : LF_OK;
    if (rc != LF_OK) return rc;
    lf_update u = {.adam = cfg->adam,
                   .step = optimizer_steps(st) + 1,
                   .max_grad_norm = cfg->max_grad_norm,
                   .skip_nonfinite = cfg->loss_scaling};
    u.adam.lr = ev->learning_rate = scheduled_lr(cfg, st);
    // the mean over the micro-batches and the loss scale undone, in one factor
    u.grad_scale = (float)(1.0 / ((double)micro * (cfg->loss_scaling ? st->loss_scale : 1.0)));
    int found_inf = 0;
    rc = lf_model_update(model, &u, st->m, st->v, &ev->grad_norm, &found_inf);
    ev->skipped = found_inf;
    if (rc != LF_OK || !cfg->loss_scaling) return rc;
    if (found_inf) st->skipped_steps++;
    loss_scale_update(&st->loss_scale, &st->growth_tracker, found_inf);
    return LF_OK;
}

// the run's params and moments on the host before Python reads them (needed: the callback saves,
// evaluates or ends the run), unless they were brought back since the last update
static int sync_run(lf_model *model, lf_train_state *st, int needed, int64_t *synced_step) {
    if (!needed || *synced_step == st->global_step) return LF_OK;
    int rc = lf_model_run_sync(model, st->m, st->v);
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
    const int64_t *rows;
    int count;
} batch_loss_call;

static int call_batch_loss(void *ctx, const float *logits, float *dlogits, float *loss) {
    const batch_loss_call *c = ctx;
    return c->cfg->batch_loss(c->cfg->batch_loss_ctx, c->rows, c->count, logits, dlogits, loss);
}

// One update: grad_accum micro-batches (fewer at the end of an epoch). Its loss and gradient are the
// mean over the micro-batches it has, as HF's Trainer divides by len(batch_samples).
static int train_update(lf_model *model, const lf_dataset *d, const lf_train_config *cfg, lf_train_state *st,
                        batch_buffers *b, int64_t batches, double *loss_out, int64_t *micro_out) {
    const int64_t n = epoch_examples(d, cfg);
    int64_t end = (st->batch_in_epoch / cfg->grad_accum + 1) * cfg->grad_accum;
    if (end > batches) end = batches;
    const int64_t micro = end - st->batch_in_epoch;
    double step_loss = 0.0;
    int rc = lf_model_update_begin(model, cfg->loss_scaling ? (float)st->loss_scale : 1.0f);
    if (rc != LF_OK) return rc;
    for (; st->batch_in_epoch < end; st->batch_in_epoch++) {
        int64_t first = st->batch_in_epoch * cfg->batch_size;
        int count = (int)(n - first < cfg->batch_size ? n - first : cfg->batch_size);
        const int64_t *rows = b->order + first;
        rc = lf_model_load_examples(model, d->ids, d->offsets, d->labels, rows, count);
        if (rc != LF_OK) return rc;
        lf_model_set_mode(model, 1, (uint64_t)st->micro_steps++);
        float loss = 0.0f;
        batch_loss_call call = {cfg, rows, count};
        rc = lf_model_forward_backward(model, cfg->class_weights, cfg->batch_loss ? call_batch_loss : NULL,
                                       &call, b->logits, &loss);
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

static int check_config(const lf_model *model, const lf_dataset *d, const lf_train_config *cfg) {
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
    if (!cfg->epoch_order != !cfg->grad_reduce || (cfg->epoch_order && cfg->epoch_size < 1))
        return lf_error(LF_EINVAL,
                        "data parallel needs both epoch_order and grad_reduce and epoch_size >= 1 "
                        "(got %lld)",
                        (long long)cfg->epoch_size);
    int64_t n = epoch_examples(d, cfg);
    if (cfg->drop_last && n < cfg->batch_size)
        return lf_error(LF_EINVAL,
                        "dataloader_drop_last with %lld examples and batch size %d leaves no batch",
                        (long long)n, cfg->batch_size);
    if (!d->labels) return lf_error(LF_EINVAL, "the training dataset has no labels");
    if (model->n_params == 0) return lf_error(LF_EINVAL, "the model has no trainable parameters");
    return lf_dataset_check(d, "train_dataset", model->cfg.vocab_size, model->cfg.num_labels);
}

// a resumed state: at an update boundary inside an epoch, counters consistent
static int check_state(const lf_train_config *cfg, const lf_train_state *st, int64_t batches) {
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
    return LF_OK;
}

int lf_train_run(lf_model *model, const lf_dataset *d, const lf_train_config *cfg, lf_train_state *st,
                 lf_train_callback callback, void *ctx) {
    int rc = check_config(model, d, cfg);
    if (rc != LF_OK) return rc;
    const int64_t n = epoch_examples(d, cfg);
    int64_t batches = lf_batches_per_epoch(n, cfg->batch_size, cfg->drop_last);
    if ((rc = check_state(cfg, st, batches)) != LF_OK) return rc;
    batch_buffers b = {0};
    if ((rc = buffers_alloc(&b, d, n, cfg->batch_size, model->cfg.num_labels)) != LF_OK) return rc;
    if ((rc = plan_run(model, d, cfg, st, &b)) != LF_OK) {
        buffers_free(&b);
        return rc;
    }
    int stop = 0;
    int64_t synced_step = -1; // global_step at the last copy of the run's params to the host
    while (!stop && st->global_step < cfg->max_steps) {
        if ((rc = epoch_order(d, cfg, b.order, n, st->epoch)) != LF_OK) break;
        while (!stop && st->batch_in_epoch < batches && st->global_step < cfg->max_steps) {
            double loss = 0.0;
            int64_t micro = 0;
            lf_train_event ev = {0};
            if ((rc = train_update(model, d, cfg, st, &b, batches, &loss, &micro)) != LF_OK ||
                (rc = apply_update(model, cfg, st, micro, &loss, &ev)) != LF_OK)
                goto done;
            st->global_step++;
            ev.step_loss = loss;
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
            if ((rc = sync_run(model, st, callback_reads_params(&ev), &synced_step)) != LF_OK) goto done;
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
        if ((rc = sync_run(model, st, callback_reads_params(&ev), &synced_step)) != LF_OK) break;
        int r = callback(ctx, &ev);
        if (r < 0) rc = LF_EINTR;
        if (r != 0) break;
    }
done:; // the params and moments the run reached, even when it stopped on an error
    int synced = sync_run(model, st, 1, &synced_step);
    lf_model_run_end(model);
    if (rc == LF_OK) rc = synced;
    buffers_free(&b);
    return rc;
}

int lf_predict(lf_model *model, const lf_dataset *d, int batch_size, const float *class_weights,
               float *logits, double *loss) {
    if (batch_size < 1) return lf_error(LF_EINVAL, "eval batch size must be >= 1, got %d", batch_size);
    if (loss && !d->labels) return lf_error(LF_EINVAL, "an eval loss needs labels");
    int rc = lf_dataset_check(d, "eval_dataset", model->cfg.vocab_size, model->cfg.num_labels);
    if (rc != LF_OK) return rc;
    const int NL = model->cfg.num_labels;
    batch_buffers b = {0};
    if ((rc = buffers_alloc(&b, d, d->n, batch_size, NL)) != LF_OK) return rc;
    for (int64_t i = 0; i < d->n; i++)
        b.order[i] = i;
    double total = 0.0;
    lf_model_set_mode(model, 0, 0);
    for (int64_t first = 0; first < d->n && rc == LF_OK; first += batch_size) {
        int count = (int)(d->n - first < batch_size ? d->n - first : batch_size);
        if ((rc = lf_model_load_examples(model, d->ids, d->offsets, d->labels, b.order + first, count)) !=
            LF_OK)
            break;
        float *z = logits + first * NL;
        if ((rc = lf_model_forward(model, z)) != LF_OK) break;
        if (loss)
            total += (double)crossentropy_forward_backward(NULL, z, model->batch.labels, class_weights, count,
                                                           NL) *
                     count;
    }
    if (loss) *loss = total / (double)d->n;
    buffers_free(&b);
    return rc;
}
