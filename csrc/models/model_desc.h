// The plain data of a model that both sides of the dlopen boundary read: the config, the tables of
// frozen weights, trainable params and linears, the LoRA config and a packed batch (models/model.h
// builds an lf_model around them), and lf_model_desc, the description of a model that
// models/model_cuda.c hands the CUDA library (kernels/device_model.cuh) with every call. The
// library reads only these structs, never struct lf_model.
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "ops/weight.h"

typedef enum { LF_ARCH_BERT = 0, LF_ARCH_ROBERTA = 1, LF_ARCH_LLAMA = 2, LF_ARCH_MISTRAL = 3 } lf_arch_id;

// How position ids and the pooled token follow from a padded (B, L) batch (lf_unpad_batch)
typedef enum {
    LF_POS_COLUMN = 0,  // position = column index in the padded row (BERT, absolute positions)
    LF_POS_ROBERTA = 1, // padding_idx + cumsum(ids != padding_idx), fairseq's rule
} lf_position_rule;

typedef enum {
    LF_POOL_FIRST = 0,       // the row's column 0 (BERT [CLS], RoBERTa <s>); it must be unmasked
    LF_POOL_LAST_NONPAD = 1, // the last token whose id != pad_token_id (HF's decoder classifiers)
} lf_pool_rule;

typedef struct {
    int arch; // lf_arch_id
    int vocab_size, hidden_size, num_layers, num_heads, num_kv_heads, head_dim, intermediate_size;
    int max_positions, type_vocab_size, pad_token_id, num_labels;
    float norm_eps, hidden_dropout, attention_dropout, classifier_dropout;
    int sliding_window; // decoder: 0 = none
    float rope_theta;   // decoder
    int position_rule, pool_rule;
} lf_model_config;

typedef struct {
    char *name; // HF checkpoint name, e.g. "roberta.encoder.layer.0.attention.self.query.weight"
    int ndim;
    int64_t shape[2], numel;
    lf_weight w; // w.data NULL until set (or never, for a model built to count parameters)
    int owned;   // 1: w.data is the model's own copy (peft's original_module of a trained head)
} lf_frozen;

typedef struct {
    char *name; // peft adapter key, e.g. "base_model.model.classifier.dense.weight"
    int ndim;
    int64_t shape[2], numel;
    float *data, *grad;
    int no_decay; // 1: HF's Trainer puts it in the no-weight-decay group
} lf_param;

// A linear layer y = x W^T + b (+ LoRA): indexes into the model's tables, -1 when absent.
typedef struct {
    int weight, bias;   // frozen table (weight required)
    int lora_a, lora_b; // param table: A (r, in), B (out, r)
    int weight_param;   // param table, for a trainable linear (a classifier head); -1 else
    int bias_param;     // param table; -1 else
    int in, out;        // sizes
    int site;           // a small integer naming this linear for dropout streams
    int target;         // index into arch->lora_targets, or -1: never gets LoRA
    int layer;          // the transformer layer it belongs to, or -1 (the head)
} lf_linear;

typedef struct {
    int r;
    float scaling; // alpha / r, or alpha / sqrt(r) with rslora
    float dropout;
} lf_lora_config;

// A packed batch: T tokens of B sequences.
typedef struct {
    int T, B, max_len;
    int32_t *tokens;      // (T,)
    int32_t *positions;   // (T,)
    int32_t *token_types; // (T,)
    int32_t *offsets;     // (B+1,) sequence b = tokens offsets[b] .. offsets[b+1]-1
    int32_t *pool_index;  // (B,) the packed index of the token each sequence is classified from
    int32_t *labels;      // (B,) or unused
} lf_batch;

// What the CUDA library reads of a model for one call (models/model_cuda.c describes the lf_model
// afresh each time). The tables and the batch arrays are the host model's, borrowed for the call.
typedef struct lf_model_desc {
    lf_model_config cfg;
    const char *arch_name;           // the architecture ("encoder", "decoder"), for messages
    const char *const *lora_targets; // the architecture's LoRA target names, by lf_linear.target
    const lf_frozen *frozen;         // [n_frozen], data loaded
    lf_param *params;                // [n_params]: host f32 data and grad buffers
    const lf_linear *linears;        // [n_linears]
    int n_frozen, n_params, n_linears;
    lf_lora_config lora;        // r == 0: no LoRA
    const void *arch_state;     // the layers' table indices: an enc_state (models/encoder.h)
                                // or a dec_state (models/decoder.h)
    int training;               // dropout on
    int gradient_checkpointing; // keep one activation per layer; backward recomputes
    uint64_t step_seed;         // the dropout streams' key of this step (lf_model_step_seed)
    lf_batch batch;             // the packed batch of this call
} lf_model_desc;

// The lowest layer with LoRA on one of its linears: linears[n_linears]; num_layers when none.
// Backward (CPU and CUDA) stops there, the frozen layers below need none.
static inline int lf_lowest_lora_layer(const lf_linear *linears, int n_linears, int num_layers) {
    int lowest = num_layers;
    for (int i = 0; i < n_linears; i++) {
        const lf_linear *l = &linears[i];
        if (l->lora_a >= 0 && l->layer >= 0 && l->layer < lowest) lowest = l->layer;
    }
    return lowest;
}

// the dropout stream (site) of linear l's LoRA branch, apart from the hidden dropout sites
static inline int lf_lora_site(const lf_linear *l) { return l->site + (1 << 24); }

// LoRA dropout's probability: lora.dropout when training, else 0
static inline float lf_lora_dropout_p(int training, lf_lora_config lora) {
    return training ? lora.dropout : 0.0f;
}
