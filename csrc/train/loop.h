// The training loop: seeded shuffling, batching, forward/backward, gradient accumulation,
// the learning-rate schedule and the optimizer updates, with HF Trainer's step/epoch
// bookkeeping, over an lf_model (models/model.h), which decides where it computes.
// Python is called back (lf_train_callback) after every update and at every epoch end, to
// report progress, log, evaluate and save; it can stop the loop there.
#pragma once

#include <stdint.h>

#include "models/model.h"
#include "train/adamw.h"

// A tokenized dataset: n examples whose tokens lie back to back.
typedef struct {
    const int32_t *ids;     // (offsets[n],)
    const int64_t *offsets; // (n+1,) example i = ids[offsets[i] .. offsets[i+1]-1]
    const int32_t *labels;  // (n,) or NULL
    int64_t n;
} lf_dataset;

// The caller's loss of a micro-batch (the Trainer's compute_loss override): given the batch's
// examples (rows: (B,) indices into the dataset) and their logits (B, num_labels), fills dlogits
// (B, num_labels) = d loss / d logits and *loss. LF_OK, or an error code already recorded.
typedef int (*lf_batch_loss_fn)(void *ctx, const int64_t *rows, int B, const float *logits, float *dlogits,
                                float *loss);

// Data parallel: the examples of epoch `epoch` on this rank (HF's sharding of the seeded order):
// fills order (n,) with dataset indices (one may come twice: the padding to whole batches on every
// rank). LF_OK, or an error code already recorded.
typedef int (*lf_epoch_order_fn)(void *ctx, int64_t epoch, int64_t *order, int64_t n);

enum { LF_EVERY_NO = 0, LF_EVERY_STEPS = 1, LF_EVERY_EPOCH = 2 }; // HF's IntervalStrategy

typedef struct {
    int batch_size, grad_accum, drop_last, schedule; // schedule: lf_schedule_kind
    int64_t max_steps, warmup_steps;
    lf_adamw_hparams adam; // adam.lr: the base learning rate; weight decay skips no_decay params
    double max_grad_norm;  // <= 0: no clipping
    uint64_t seed;         // the shuffling of epoch e is a function of (seed, e)
    int log_every, eval_every, save_every, log_first_step;
    int64_t log_steps, eval_steps, save_steps;
    const float *class_weights;  // (num_labels,) or NULL
    int loss_scaling;            // 1: fp16's dynamic loss scaling (train/loss_scale.h); needs CUDA
    lf_batch_loss_fn batch_loss; // NULL: the class-weighted cross-entropy; else the caller's loss
    void *batch_loss_ctx;
    // data parallel (both set, or neither): each epoch's epoch_size examples come from epoch_order
    // instead of the seeded shuffle of the whole dataset, and each update's gradients and loss are
    // averaged over the ranks by grad_reduce (models/model.h) after its micro-batches, before clipping
    int64_t epoch_size;
    lf_epoch_order_fn epoch_order;
    void *epoch_order_ctx;
    lf_reduce_fn grad_reduce;
    void *grad_reduce_ctx;
    // 1: the gradients are reduced on the device by grad_reduce itself (NCCL): it gets the loss alone
    int grad_reduce_device;
} lf_train_config;

// Everything besides the parameters that a checkpoint needs to continue bit for bit.
typedef struct {
    int64_t global_step, epoch, batch_in_epoch, micro_steps, last_log_step;
    // updates skipped for an inf/NaN gradient (loss scaling): AdamW's step count and the schedule
    // advance only with the others, as torch's optimizer and HF's scheduler do
    int64_t skipped_steps;
    int64_t growth_tracker; // loss scaling: good updates in a row (train/loss_scale.h)
    double loss_total, loss_since_log;
    double loss_scale; // loss scaling: the current scale (LF_LOSS_SCALE_INIT at the start)
    float *m, *v;      // (sum of the params' numel,) AdamW moments, params in table order
} lf_train_state;

typedef struct {
    int epoch_end; // 0: after an update step, 1: at the end of an epoch
    int should_log, should_evaluate, should_save, is_last;
    int64_t global_step;
    double epoch, loss, learning_rate, grad_norm; // loss: mean since the last log (when should_log)
    double step_loss;                             // this update's loss (after an update)
    int skipped;                                  // 1: the update was skipped (fp16 inf/NaN gradient)
} lf_train_event;

// returns 0 to go on, 1 to stop, < 0 on an error the caller has already recorded
typedef int (*lf_train_callback)(void *ctx, const lf_train_event *event);

// micro-batches and update steps per epoch, as HF's Trainer counts them
int64_t lf_batches_per_epoch(int64_t n, int batch_size, int drop_last);
int64_t lf_updates_per_epoch(int64_t n, int batch_size, int drop_last, int grad_accum);

// Trains until cfg->max_steps updates are done or the callback stops it. LF_OK, or an error
// code (a callback error: LF_EINTR).
int lf_train_run(lf_model *model, const lf_dataset *train, const lf_train_config *cfg, lf_train_state *state,
                 lf_train_callback callback, void *ctx);

// logits: (n, num_labels) in dataset order; loss: HF's eval loss (the per-batch class-weighted
// losses averaged over examples), or NULL; needs labels.
int lf_predict(lf_model *model, const lf_dataset *data, int batch_size, const float *class_weights,
               float *logits, double *loss);

// LF_EINVAL naming the first bad example (empty, ids outside [0, vocab), label out of range)
int lf_dataset_check(const lf_dataset *data, const char *what, int vocab_size, int num_labels);
