// The model framework: tables, LoRA, unpadding, workspace, forward and training step.
#include "models/model.h"

#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "models/plan.h"
#include "ops/crossentropy.h"
#include "ops/lora.h"
#include "ops/matmul.h"
#include "ops/random.h"
#include "train/clip.h"

extern const lf_arch lf_arch_encoder;
extern const lf_arch lf_arch_decoder;

static const lf_arch *arch_of(int id) {
    switch (id) {
    case LF_ARCH_BERT:
    case LF_ARCH_ROBERTA:
        return &lf_arch_encoder;
    case LF_ARCH_LLAMA:
    case LF_ARCH_MISTRAL:
        return &lf_arch_decoder;
    default:
        return NULL;
    }
}

static int check_config(const lf_model_config *c) {
    const struct {
        const char *name;
        int value, min;
    } sizes[] = {
        {"vocab_size", c->vocab_size, 1},
        {"hidden_size", c->hidden_size, 1},
        {"num_hidden_layers", c->num_layers, 0},
        {"num_attention_heads", c->num_heads, 1},
        {"num_key_value_heads", c->num_kv_heads, 1},
        {"head_dim", c->head_dim, 1},
        {"intermediate_size", c->intermediate_size, 1},
        {"max_position_embeddings", c->max_positions, 1},
        {"num_labels", c->num_labels, 2},
    };
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++)
        if (sizes[i].value < sizes[i].min)
            return lf_error(LF_EINVAL, "config: %s must be >= %d, got %d", sizes[i].name, sizes[i].min,
                            sizes[i].value);
    if (c->num_heads % c->num_kv_heads != 0)
        return lf_error(LF_EINVAL,
                        "config: num_attention_heads %d is not a multiple of num_key_value_heads %d",
                        c->num_heads, c->num_kv_heads);
    const float probs[] = {c->hidden_dropout, c->attention_dropout, c->classifier_dropout};
    for (int i = 0; i < 3; i++)
        if (!(probs[i] >= 0.0f && probs[i] < 1.0f))
            return lf_error(LF_EINVAL, "config: dropout probabilities must be in [0, 1), got %g", probs[i]);
    return LF_OK;
}

lf_model *lf_model_create(const lf_model_config *cfg) {
    const lf_arch *arch = arch_of(cfg->arch);
    if (arch == NULL) {
        lf_error(LF_EINVAL, "unsupported architecture id %d", cfg->arch);
        return NULL;
    }
    if (check_config(cfg) != LF_OK) return NULL;
    lf_model *m = calloc(1, sizeof *m);
    if (m == NULL) {
        lf_error(LF_ENOMEM, "out of memory creating the model");
        return NULL;
    }
    m->cfg = *cfg;
    m->arch = arch;
    if (arch->build(m) != LF_OK || lf_model_plan_params(m) != LF_OK) {
        lf_model_free(m);
        return NULL;
    }
    return m;
}

static void free_bf16(lf_model *m) {
    if (m->bf16 != NULL)
        for (int i = 0; i < m->n_linears; i++)
            matmul_bf16_free(m->bf16[i]);
    free(m->bf16);
    m->bf16 = NULL;
}

void lf_model_free(lf_model *m) {
    if (m == NULL) return;
    lf_model_to_cpu(m);
    free_bf16(m);
    for (int i = 0; i < m->n_frozen; i++) {
        free(m->frozen[i].name);
        if (m->frozen[i].owned) free((void *)m->frozen[i].w.data);
    }
    for (int i = 0; i < m->n_params; i++) {
        free(m->params[i].name);
        free(m->params[i].data);
        free(m->params[i].grad);
    }
    free(m->reduce_buf);
    free(m->frozen);
    free(m->params);
    free(m->linears);
    free(m->work);
    free(m->batch_ints);
    free(m->arch_state);
    free(m);
}

// HF Trainer's no-decay rule (get_decay_parameter_names): LayerNorm layers, and names
// matching bias | layernorm | rmsnorm | (^|.)norm($|.) | _norm($|.)
static int hf_no_decay(const char *name) {
    char low[512];
    size_t n = strlen(name) < sizeof low - 1 ? strlen(name) : sizeof low - 1;
    for (size_t i = 0; i < n; i++)
        low[i] = (char)tolower((unsigned char)name[i]);
    low[n] = '\0';
    if (strstr(low, "bias") || strstr(low, "layernorm") || strstr(low, "rmsnorm")) return 1;
    for (const char *p = strstr(low, "norm"); p != NULL; p = strstr(p + 1, "norm")) {
        int end = p[4] == '\0' || p[4] == '.';
        if (end && (p == low || p[-1] == '.' || p[-1] == '_')) return 1;
    }
    return 0;
}

static char *prefixed(const char *prefix, const char *name, const char *suffix) {
    size_t n = strlen(prefix) + strlen(name) + strlen(suffix) + 1;
    char *s = malloc(n);
    if (s != NULL) snprintf(s, n, "%s%s%s", prefix, name, suffix);
    return s;
}

static int grow(void **items, int *cap, int n, size_t size) {
    if (n < *cap) return LF_OK;
    int next = *cap ? 2 * *cap : 64;
    void *p = realloc(*items, (size_t)next * size);
    if (p == NULL) return lf_error(LF_ENOMEM, "out of memory growing a model table");
    *items = p;
    *cap = next;
    return LF_OK;
}

int lf_model_add_frozen(lf_model *m, const char *name, int ndim, int64_t d0, int64_t d1) {
    if (grow((void **)&m->frozen, &m->cap_frozen, m->n_frozen, sizeof *m->frozen) != LF_OK) return -1;
    lf_frozen *f = &m->frozen[m->n_frozen];
    *f = (lf_frozen){.name = prefixed("", name, ""), .ndim = ndim, .shape = {d0, ndim > 1 ? d1 : 1}};
    f->numel = d0 * (ndim > 1 ? d1 : 1);
    return m->n_frozen++;
}

int lf_model_add_param(lf_model *m, const char *name, int ndim, int64_t d0, int64_t d1, int no_decay) {
    if (grow((void **)&m->params, &m->cap_params, m->n_params, sizeof *m->params) != LF_OK) return -1;
    lf_param *p = &m->params[m->n_params];
    *p = (lf_param){.name = prefixed("", name, ""), .ndim = ndim, .shape = {d0, ndim > 1 ? d1 : 1}};
    p->numel = d0 * (ndim > 1 ? d1 : 1);
    p->no_decay = no_decay < 0 ? hf_no_decay(name) : no_decay;
    return m->n_params++;
}

void lf_model_set_layer_linear(lf_model *m, int i, int layer, int target) {
    m->linears[i].layer = layer;
    m->linears[i].target = target;
}

int lf_model_find_frozen(const lf_model *m, const char *name) {
    for (int i = 0; i < m->n_frozen; i++)
        if (strcmp(m->frozen[i].name, name) == 0) return i;
    return -1;
}

int lf_model_find_param(const lf_model *m, const char *name) {
    for (int i = 0; i < m->n_params; i++)
        if (strcmp(m->params[i].name, name) == 0) return i;
    return -1;
}

int lf_model_add_linear(lf_model *m, const char *prefix, int in, int out, int with_bias, int trainable,
                        int site) {
    if (grow((void **)&m->linears, &m->cap_linears, m->n_linears, sizeof *m->linears) != LF_OK) return -1;
    char name[512];
    lf_linear l = {.weight = -1,
                   .bias = -1,
                   .lora_a = -1,
                   .lora_b = -1,
                   .weight_param = -1,
                   .bias_param = -1,
                   .in = in,
                   .out = out,
                   .site = site,
                   .target = -1,
                   .layer = -1};
    snprintf(name, sizeof name, "%s.weight", prefix);
    if (trainable)
        l.weight_param = lf_model_add_param(m, name, 2, out, in, -1);
    else
        l.weight = lf_model_add_frozen(m, name, 2, out, in);
    snprintf(name, sizeof name, "%s.bias", prefix);
    if (with_bias && trainable)
        l.bias_param = lf_model_add_param(m, name, 1, out, 1, -1);
    else if (with_bias)
        l.bias = lf_model_add_frozen(m, name, 1, out, 1);
    m->linears[m->n_linears] = l;
    return m->n_linears++;
}

int lf_model_plan_params(lf_model *m) {
    for (int i = 0; i < m->n_params; i++) {
        lf_param *p = &m->params[i];
        if (p->data != NULL) continue;
        p->data = calloc((size_t)p->numel, sizeof(float));
        p->grad = calloc((size_t)p->numel, sizeof(float));
        if (p->data == NULL || p->grad == NULL) return lf_error(LF_ENOMEM, "out of memory for %s", p->name);
    }
    return LF_OK;
}

int lf_model_set_frozen(lf_model *m, int index, const void *data, lf_dtype dtype) {
    if (index < 0 || index >= m->n_frozen)
        return lf_error(LF_EINVAL, "frozen tensor index %d out of range", index);
    if (!lf_dtype_is_float(dtype))
        return lf_error(LF_EINVAL, "weight dtype must be float32, float16 or bfloat16, got code %d",
                        (int)dtype);
    lf_frozen *f = &m->frozen[index];
    if (m->cuda_model != NULL)
        return lf_error(LF_EINVAL,
                        "weight %s cannot be set while the model is on CUDA: move it to the CPU first",
                        f->name);
    lf_weight w = {data, dtype};
    int64_t bad;
    if (!weight_all_finite(w, f->numel, &bad))
        return lf_error(LF_EINVAL, "weight %s (%s) holds a non-finite value (NaN or Inf) at flat index %lld",
                        f->name, lf_dtype_name(dtype), (long long)bad);
    f->w = w;
    m->frozen_version++;
    return LF_OK;
}

int lf_model_check_ready(const lf_model *m) {
    for (int i = 0; i < m->n_frozen; i++)
        if (m->frozen[i].w.data == NULL)
            return lf_error(LF_EINVAL, "weight %s is not loaded (model built with materialize=False?)",
                            m->frozen[i].name);
    return LF_OK;
}

int lf_model_to_cuda(lf_model *m, lf_dtype dtype, int device) {
    if (lf_model_check_ready(m) != LF_OK) return LF_EINVAL;
    return lf_model_cuda_create(m, dtype, device);
}

// peft keeps the original of a module it trains in full (modules_to_save) as a frozen
// "<module>.original_module.<rest>": counted in all params
static int add_original_module(lf_model *m, const lf_param *p) {
    const char *dot = strchr(p->name, '.');
    char name[512];
    int module_len = dot ? (int)(dot - p->name) : (int)strlen(p->name);
    snprintf(name, sizeof name, "base_model.model.%.*s.original_module%s", module_len, p->name,
             dot ? dot : "");
    int i = lf_model_add_frozen(m, name, p->ndim, p->shape[0], p->shape[1]);
    if (i < 0) return LF_ENOMEM;
    float *copy = malloc((size_t)p->numel * sizeof(float));
    if (copy == NULL) return lf_error(LF_ENOMEM, "out of memory copying %s", p->name);
    memcpy(copy, p->data, (size_t)p->numel * sizeof(float));
    m->frozen[i].w = lf_weight_f32(copy);
    m->frozen[i].owned = 1;
    return LF_OK;
}

static int module_name(char *out, size_t size, const lf_model *m, const lf_linear *l) {
    const char *w = m->frozen[l->weight].name;
    size_t n = strlen(w) - strlen(".weight");
    if (n + 1 > size) return lf_error(LF_EINVAL, "module name too long: %s", w);
    memcpy(out, w, n);
    out[n] = '\0';
    return LF_OK;
}

int lf_model_add_lora(lf_model *m, lf_lora_config lora, unsigned target_mask, uint64_t seed) {
    if (m->lora.r != 0) return lf_error(LF_EINVAL, "the model already has LoRA adapters");
    if (lora.r < 1) return lf_error(LF_EINVAL, "LoRA r must be >= 1, got %d", lora.r);
    if (!(lora.dropout >= 0.0f && lora.dropout < 1.0f))
        return lf_error(LF_EINVAL, "lora_dropout must be in [0, 1), got %g", lora.dropout);
    int n_head = m->n_params;
    for (int i = 0; i < n_head; i++) {
        if (add_original_module(m, &m->params[i]) != LF_OK) return lf_error_code();
        char *name = prefixed("base_model.model.", m->params[i].name, "");
        if (name == NULL) return lf_error(LF_ENOMEM, "out of memory");
        free(m->params[i].name);
        m->params[i].name = name;
    }
    for (int i = 0; i < m->n_linears; i++) {
        lf_linear *l = &m->linears[i];
        if (l->target < 0 || !(target_mask >> l->target & 1u)) continue;
        char module[448], name[512];
        if (module_name(module, sizeof module, m, l) != LF_OK) return LF_EINVAL;
        snprintf(name, sizeof name, "base_model.model.%s.lora_A.weight", module);
        l->lora_a = lf_model_add_param(m, name, 2, lora.r, l->in, 0);
        snprintf(name, sizeof name, "base_model.model.%s.lora_B.weight", module);
        l->lora_b = lf_model_add_param(m, name, 2, l->out, lora.r, 0);
        if (l->lora_a < 0 || l->lora_b < 0) return LF_ENOMEM;
    }
    if (lf_model_plan_params(m) != LF_OK) return LF_ENOMEM;
    for (int i = 0; i < m->n_linears; i++) { // A: kaiming_uniform_(a=sqrt(5)) = U(-1/sqrt(in), 1/sqrt(in))
        const lf_linear *l = &m->linears[i];
        if (l->lora_a < 0) continue;
        float bound = 1.0f / sqrtf((float)l->in);
        random_uniform_fill(m->params[l->lora_a].data, m->params[l->lora_a].numel, -bound, bound,
                            lf_stream_key(seed, (uint64_t)i));
    }
    m->lora = lora;
    m->lora_target_mask = target_mask;
    return lf_model_cuda_refresh(m); // the tables changed: a device copy is made again
}

static int reserve_batch(lf_model *m, int T, int B) {
    size_t need = 3 * (size_t)T + 3 * (size_t)B + 1;
    if (need > m->batch_ints_cap) {
        int32_t *p = realloc(m->batch_ints, need * sizeof(int32_t));
        if (p == NULL) return lf_error(LF_ENOMEM, "out of memory for a batch of %d tokens", T);
        m->batch_ints = p;
        m->batch_ints_cap = need;
    }
    lf_batch *b = &m->batch;
    b->tokens = m->batch_ints;
    b->positions = b->tokens + T;
    b->token_types = b->positions + T;
    b->offsets = b->token_types + T;
    b->pool_index = b->offsets + B + 1;
    b->labels = b->pool_index + B;
    return LF_OK;
}

// every value of the padded batch in range; returns the number of unmasked tokens or -1
static int64_t check_padded(const lf_model *m, const int64_t *ids, const int64_t *mask, const int64_t *types,
                            const int64_t *labels, int B, int L) {
    const lf_model_config *c = &m->cfg;
    int64_t T = 0;
    for (int64_t i = 0; i < (int64_t)B * L; i++) {
        if (ids[i] < 0 || ids[i] >= c->vocab_size)
            return lf_error(LF_EINVAL, "input_ids[%lld][%lld] = %lld is outside the vocabulary [0, %d)",
                            (long long)(i / L), (long long)(i % L), (long long)ids[i], c->vocab_size),
                   -1;
        if (mask[i] != 0 && mask[i] != 1)
            return lf_error(LF_EINVAL, "attention_mask[%lld][%lld] = %lld: values must be 0 or 1",
                            (long long)(i / L), (long long)(i % L), (long long)mask[i]),
                   -1;
        if (types != NULL && (types[i] < 0 || types[i] >= (c->type_vocab_size > 0 ? c->type_vocab_size : 1)))
            return lf_error(LF_EINVAL, "token_type_ids[%lld][%lld] = %lld is outside [0, %d)",
                            (long long)(i / L), (long long)(i % L), (long long)types[i], c->type_vocab_size),
                   -1;
        T += mask[i];
    }
    for (int b = 0; labels != NULL && b < B; b++)
        if (labels[b] < 0 || labels[b] >= c->num_labels)
            return lf_error(LF_EINVAL, "labels[%d] = %lld is outside [0, num_labels=%d)", b,
                            (long long)labels[b], c->num_labels),
                   -1;
    if (T > INT32_MAX / 4) return lf_error(LF_EINVAL, "batch of %lld tokens is too large", (long long)T), -1;
    return T;
}

// position id of token id at column j of a row, per the architecture's rule; *count: running
// non-pad count of the row
static int64_t position_of(const lf_model *m, int64_t id, int j, int64_t *count) {
    if (m->cfg.position_rule == LF_POS_ROBERTA) {
        int pad = m->cfg.pad_token_id;
        if (id == pad) return pad;
        return pad + ++*count;
    }
    return j;
}

// 1 when the classifier may read token id: the last such column is pooled (LF_POOL_LAST_NONPAD)
static int poolable(const lf_model *m, int64_t id) { return id != m->cfg.pad_token_id; }

static int pool_column(const lf_model *m, const int64_t *row, int L) {
    if (m->cfg.pool_rule == LF_POOL_FIRST) return 0;
    int last = 0;
    for (int j = 0; j < L; j++)
        if (poolable(m, row[j])) last = j;
    return last;
}

static int position_error(int row, int len, int64_t pos, int max_positions) {
    return lf_error(LF_EINVAL,
                    "row %d: a sequence of %d tokens needs position id %lld, beyond "
                    "max_position_embeddings=%d (index out of range)",
                    row, len, (long long)pos, max_positions);
}

static int check_pool_rule(const lf_model *m, int B) {
    if (m->cfg.pool_rule == LF_POOL_LAST_NONPAD && m->cfg.pad_token_id < 0 && B > 1)
        return lf_error(LF_EINVAL, "Cannot handle batch sizes > 1 if no padding token is defined.");
    return LF_OK;
}

// 1 when the unmasked columns of a row are one block (left or right padding, or none)
static int mask_is_one_block(const int64_t *mrow, int L) {
    int blocks = 0;
    for (int j = 0; j < L; j++)
        blocks += mrow[j] && (j == 0 || !mrow[j - 1]);
    return blocks <= 1;
}

int lf_unpad_batch(lf_model *m, const int64_t *ids, const int64_t *mask, const int64_t *token_types,
                   const int64_t *labels, int B, int L) {
    if (B < 1 || L < 1) return lf_error(LF_EINVAL, "input_ids must have at least one row and one column");
    if (check_pool_rule(m, B) != LF_OK) return LF_EINVAL;
    int64_t T = check_padded(m, ids, mask, token_types, labels, B, L);
    if (T < 0) return LF_EINVAL;
    if (reserve_batch(m, (int)T, B) != LF_OK) return LF_ENOMEM;
    lf_batch *bt = &m->batch;
    int t = 0;
    bt->max_len = 0;
    for (int b = 0; b < B; b++) {
        const int64_t *row = ids + (size_t)b * L, *mrow = mask + (size_t)b * L;
        int pool = pool_column(m, row, L);
        if (!mrow[pool])
            return lf_error(
                LF_EINVAL,
                "row %d: the token the classifier reads (column %d) is masked out by "
                "attention_mask (%s)",
                b, pool, m->cfg.pool_rule == LF_POOL_FIRST ? "encoders need right padding" : "check padding");
        if (m->cfg.sliding_window > 0 && !mask_is_one_block(mrow, L))
            return lf_error(LF_EINVAL,
                            "row %d: attention_mask has a gap; with sliding_window only left or right "
                            "padding is supported",
                            b);
        bt->offsets[b] = t;
        int64_t count = 0;
        for (int j = 0; j < L; j++) {
            int64_t pos = position_of(m, row[j], j, &count);
            if (pos >= m->cfg.max_positions) return position_error(b, L, pos, m->cfg.max_positions);
            if (j == pool) bt->pool_index[b] = t;
            if (!mrow[j]) continue;
            bt->tokens[t] = (int32_t)row[j];
            bt->positions[t] = (int32_t)pos;
            bt->token_types[t] = token_types ? (int32_t)token_types[(size_t)b * L + j] : 0;
            t++;
        }
        if (t - bt->offsets[b] > bt->max_len) bt->max_len = t - bt->offsets[b];
        bt->labels[b] = labels ? (int32_t)labels[b] : 0;
    }
    bt->offsets[B] = t;
    bt->T = t;
    bt->B = B;
    return LF_OK;
}

int lf_model_load_examples(lf_model *m, const int32_t *ids, const int64_t *offsets, const int32_t *labels,
                           const int64_t *rows, int count) {
    if (count < 1) return lf_error(LF_EINVAL, "a batch needs at least one example");
    if (check_pool_rule(m, count) != LF_OK) return LF_EINVAL;
    int64_t T = 0;
    for (int b = 0; b < count; b++)
        T += offsets[rows[b] + 1] - offsets[rows[b]];
    if (T > INT32_MAX / 4) return lf_error(LF_EINVAL, "batch of %lld tokens is too large", (long long)T);
    if (reserve_batch(m, (int)T, count) != LF_OK) return LF_ENOMEM;
    lf_batch *bt = &m->batch;
    int t = 0;
    bt->max_len = 0;
    for (int b = 0; b < count; b++) {
        const int32_t *row = ids + offsets[rows[b]];
        int len = (int)(offsets[rows[b] + 1] - offsets[rows[b]]);
        int64_t seen = 0;
        bt->offsets[b] = t;
        bt->pool_index[b] = t;
        for (int j = 0; j < len; j++, t++) {
            int64_t pos = position_of(m, row[j], j, &seen);
            if (pos >= m->cfg.max_positions) return position_error(b, len, pos, m->cfg.max_positions);
            if (m->cfg.pool_rule == LF_POOL_LAST_NONPAD && poolable(m, row[j])) bt->pool_index[b] = t;
            bt->tokens[t] = row[j];
            bt->positions[t] = (int32_t)pos;
            bt->token_types[t] = 0;
        }
        if (len > bt->max_len) bt->max_len = len;
        bt->labels[b] = labels ? labels[rows[b]] : 0;
    }
    bt->offsets[count] = t;
    bt->T = t;
    bt->B = count;
    return LF_OK;
}

void lf_model_set_mode(lf_model *m, int training, uint64_t step) {
    m->training = training;
    m->step = step;
}

// the memory the system can still give without swapping (Linux's MemAvailable), 0 when unknown
static size_t available_bytes(void) {
    FILE *f = fopen("/proc/meminfo", "r");
    if (f == NULL) return 0;
    char line[256];
    unsigned long long kib = 0;
    while (fgets(line, sizeof line, f) != NULL)
        if (sscanf(line, "MemAvailable: %llu kB", &kib) == 1) break;
    fclose(f);
    return (size_t)kib * 1024;
}

int lf_model_reserve(lf_model *m, size_t floats) {
    if (floats <= m->work_floats) return LF_OK;
    size_t bytes = (floats * sizeof(float) + LF_CPU_ALIGN - 1) / LF_CPU_ALIGN * LF_CPU_ALIGN;
    free(m->work); // nothing in it outlives a grow: it happens before a forward
    m->work = NULL;
    m->work_floats = 0;
    // checked before allocating: an allocation the system cannot back ends in the OOM killer
    size_t available = available_bytes();
    float *p = bytes / sizeof(float) >= floats && (available == 0 || bytes <= available)
                   ? aligned_alloc(LF_CPU_ALIGN, bytes)
                   : NULL;
    if (p == NULL)
        return lf_error(
            LF_ENOMEM,
            "out of memory for the activations of a batch: %.1f MiB asked, %.1f MiB available (a "
            "smaller batch size, e.g. per_device_eval_batch_size, or a smaller max_length needs less)",
            (double)floats * sizeof(float) / (1 << 20), (double)available / (1 << 20));
    m->work = p;
    m->work_floats = floats;
    return LF_OK;
}

// ---- bf16 on the CPU

// the frozen linears' weights packed for bf16 products, when stale (first use, new frozen weights)
static int pack_bf16(lf_model *m) {
    if (m->bf16 != NULL && m->bf16_version == m->frozen_version) return LF_OK;
    if (lf_model_check_ready(m) != LF_OK) return LF_EINVAL;
    free_bf16(m);
    m->bf16 = calloc((size_t)m->n_linears, sizeof *m->bf16);
    if (m->bf16 == NULL) return lf_error(LF_ENOMEM, "out of memory packing the weights for bf16");
    for (int i = 0; i < m->n_linears; i++) {
        const lf_linear *l = &m->linears[i];
        if (l->weight_param >= 0) continue; // trained in full: f32, as under autocast's f32 master weights
        int rc = matmul_bf16_pack(&m->bf16[i], m->frozen[l->weight].w, l->in, l->out,
                                  lf_linear_bias(m, l) != NULL, m->frozen[l->weight].name);
        if (rc != LF_OK) {
            free_bf16(m);
            return rc;
        }
    }
    m->bf16_version = m->frozen_version;
    return LF_OK;
}

int lf_model_set_cpu_dtype(lf_model *m, lf_dtype dtype) {
    if (dtype != LF_F32 && dtype != LF_BF16)
        return lf_error(LF_EINVAL, "dtype '%s' on the CPU: lorafast computes in float32 or bfloat16 there",
                        lf_dtype_name(dtype) ? lf_dtype_name(dtype) : "?");
    m->cpu_dtype = dtype;
    if (dtype == LF_F32) {
        free_bf16(m);
        return LF_OK;
    }
    return lf_model_check_ready(m) == LF_OK ? pack_bf16(m) : LF_OK; // unloaded weights: packed at first use
}

// bf16 elements a product's scratch needs for T tokens (0 in f32)
static size_t bf16_scratch_elems(const lf_model *m, int T) {
    if (m->cpu_dtype != LF_BF16) return 0;
    size_t n = 0;
    for (int i = 0; i < m->n_linears; i++) {
        size_t e = matmul_bf16_scratch_elems(T, m->linears[i].in, m->linears[i].out);
        n = e > n ? e : n;
    }
    return n;
}

// floats of work past the architecture's: dlogits (B, num_labels), then the bf16 scratch
static size_t tail_floats(const lf_model *m, int T, int B) {
    size_t dl = ((size_t)B * m->cfg.num_labels + 15) / 16 * 16;
    return dl + (bf16_scratch_elems(m, T) + 1) / 2;
}

static int prepare(lf_model *m, float **dlogits) {
    if (lf_model_check_ready(m) != LF_OK) return LF_EINVAL;
    if (m->cpu_dtype == LF_BF16 && pack_bf16(m) != LF_OK) return lf_error_code();
    const lf_batch *b = &m->batch;
    size_t arch = m->arch->workspace_floats(m, b->T, b->B, b->max_len);
    if (lf_model_reserve(m, arch + tail_floats(m, b->T, b->B)) != LF_OK) return LF_ENOMEM;
    *dlogits = m->work + arch;
    m->bf16_scratch = (uint16_t *)(m->work + arch + ((size_t)b->B * m->cfg.num_labels + 15) / 16 * 16);
    m->bf16_rc = LF_OK;
    return LF_OK;
}

int lf_model_forward(lf_model *m, float *logits) {
    int rc;
    if (m->cuda_model != NULL) {
        rc = lf_model_cuda_forward(m, logits);
    } else {
        float *dlogits;
        m->inference = 1; // nothing kept for backward: the workspace of inference
        if (prepare(m, &dlogits) != LF_OK) return lf_error_code();
        rc = m->arch->forward(m, &m->batch, logits);
        if (rc == LF_OK) rc = m->bf16_rc;
    }
    if (m->training) m->step++;
    return rc;
}

// a training step on CUDA whose loss is computed on the host: the logits come down, loss_fn's
// gradient (in m->work, the host workspace the CPU does not use then) goes up for the backward
static int cuda_step_with_host_loss(lf_model *m, lf_logits_loss_fn loss_fn, void *loss_ctx, float *logits,
                                    float *loss) {
    if (lf_model_reserve(m, (size_t)m->batch.B * m->cfg.num_labels) != LF_OK) return LF_ENOMEM;
    int rc = lf_model_cuda_forward(m, logits);
    if (rc == LF_OK) rc = loss_fn(loss_ctx, logits, m->work, loss);
    if (rc == LF_OK) rc = lf_model_cuda_backward(m, m->work);
    return rc;
}

int lf_model_forward_backward(lf_model *m, const float *class_weights, lf_logits_loss_fn loss_fn,
                              void *loss_ctx, float *logits, float *loss) {
    if (m->cuda_model != NULL) {
        int rc = loss_fn != NULL ? cuda_step_with_host_loss(m, loss_fn, loss_ctx, logits, loss)
                                 : lf_model_cuda_forward_backward(m, class_weights, logits, loss);
        if (m->training) m->step++;
        return rc;
    }
    float *dlogits;
    m->inference = 0;
    if (prepare(m, &dlogits) != LF_OK) return lf_error_code();
    const lf_batch *b = &m->batch;
    int rc = m->arch->forward(m, b, logits);
    if (rc == LF_OK && loss_fn != NULL)
        rc = loss_fn(loss_ctx, logits, dlogits, loss);
    else if (rc == LF_OK)
        *loss =
            crossentropy_forward_backward(dlogits, logits, b->labels, class_weights, b->B, m->cfg.num_labels);
    if (rc == LF_OK) rc = m->arch->backward(m, b, dlogits);
    if (rc == LF_OK) rc = m->bf16_rc;
    if (m->training) m->step++;
    return rc;
}

void lf_model_zero_grad(lf_model *m) {
    for (int i = 0; i < m->n_params; i++)
        memset(m->params[i].grad, 0, (size_t)m->params[i].numel * sizeof(float));
}

// ---- a training run

int lf_model_run_begin(lf_model *m, const float *m_moments, const float *v_moments, int max_batch,
                       int max_tokens, int max_len, int loss_scaling, int external_loss) {
    if (lf_model_check_ready(m) != LF_OK) return LF_EINVAL;
    if (loss_scaling && m->cuda_model == NULL)
        return lf_error(LF_EINVAL, "fp16 loss scaling needs the model on CUDA (the CPU computes in float32)");
    if (m->cuda_model != NULL) { // a loss computed on the host: its gradient's host buffer planned too
        size_t host = external_loss ? (size_t)max_batch * m->cfg.num_labels : 0;
        if (lf_model_reserve(m, host) != LF_OK) return LF_ENOMEM;
        return lf_model_cuda_optimizer_begin(m, m_moments, v_moments, max_batch, max_len);
    }
    if (reserve_batch(m, max_tokens, max_batch) != LF_OK) return LF_ENOMEM;
    m->inference = 0; // the training steps' workspace
    if (m->cpu_dtype == LF_BF16 && pack_bf16(m) != LF_OK) return lf_error_code();
    size_t arch = m->arch->workspace_floats(m, max_tokens, max_batch, max_len);
    return lf_model_reserve(m, arch + tail_floats(m, max_tokens, max_batch));
}

int lf_model_update_begin(lf_model *m, float loss_scale) {
    if (m->cuda_model != NULL) return lf_model_cuda_optimizer_begin_update(m, loss_scale);
    lf_model_zero_grad(m);
    return LF_OK;
}

// clipping and AdamW over the params' grads on the CPU (lf_update's semantics)
static void cpu_update(lf_model *m, const lf_update *u, float *m_moments, float *v_moments, double *norm,
                       int *found_inf) {
    int n = m->n_params > 0 ? m->n_params : 1;
    float *grads[n];
    int64_t sizes[n];
    for (int p = 0; p < m->n_params; p++) {
        grads[p] = m->params[p].grad;
        sizes[p] = m->params[p].numel;
        if (u->grad_scale != 1.0f)
            for (int64_t i = 0; i < sizes[p]; i++)
                grads[p][i] *= u->grad_scale;
    }
    *norm = grad_global_norm(grads, sizes, m->n_params);
    *found_inf = u->skip_nonfinite && !isfinite(*norm);
    if (*found_inf) return;
    if (u->max_grad_norm > 0) grad_clip(grads, sizes, m->n_params, *norm, u->max_grad_norm);
    int64_t offset = 0;
    for (int p = 0; p < m->n_params; p++) {
        lf_adamw_hparams h = u->adam;
        if (m->params[p].no_decay) h.weight_decay = 0.0;
        adamw_update(m->params[p].data, grads[p], m_moments + offset, v_moments + offset, sizes[p], &h,
                     u->step);
        offset += sizes[p];
    }
}

int lf_model_update(lf_model *m, const lf_update *u, float *m_moments, float *v_moments, double *norm,
                    int *found_inf) {
    if (m->cuda_model != NULL) return lf_model_cuda_optimizer_step(m, u, norm, found_inf);
    cpu_update(m, u, m_moments, v_moments, norm, found_inf);
    return LF_OK;
}

int lf_model_reduce_begin(lf_model *m) {
    int64_t n = 1; // the loss
    for (int p = 0; p < m->n_params; p++)
        n += m->params[p].numel;
    if (m->reduce_floats == n) return LF_OK;
    free(m->reduce_buf);
    m->reduce_floats = 0;
    if ((m->reduce_buf = malloc(sizeof(float) * (size_t)n)) == NULL)
        return lf_error(LF_ENOMEM, "out of memory for the %lld floats of the gradient all-reduce",
                        (long long)n);
    m->reduce_floats = n;
    return LF_OK;
}

int lf_model_reduce_grads(lf_model *m, lf_reduce_fn reduce, void *ctx, int on_device, double *loss) {
    if (m->reduce_buf == NULL)
        return lf_error(LF_EINVAL, "lf_model_reduce_grads before lf_model_reduce_begin");
    const int64_t n = m->reduce_floats - 1;
    float *buf = m->reduce_buf;
    int rc = LF_OK;
    if (on_device) { // the callee reduces the device gradients: it gets the loss alone
        if (m->cuda_model == NULL)
            return lf_error(LF_EINVAL, "a reduction on the device for a model on the CPU");
        buf[n] = (float)*loss;
        if ((rc = reduce(ctx, buf + n, 1)) != LF_OK) return rc;
        *loss = (double)buf[n];
        return LF_OK;
    }
    if (m->cuda_model != NULL)
        rc = lf_model_cuda_grads(m, buf, 1);
    else
        for (int64_t p = 0, off = 0; p < m->n_params; off += m->params[p].numel, p++)
            memcpy(buf + off, m->params[p].grad, sizeof(float) * (size_t)m->params[p].numel);
    buf[n] = (float)*loss;
    if (rc != LF_OK || (rc = reduce(ctx, buf, n + 1)) != LF_OK) return rc;
    *loss = (double)buf[n];
    if (m->cuda_model != NULL) return lf_model_cuda_grads(m, buf, 0);
    for (int64_t p = 0, off = 0; p < m->n_params; off += m->params[p].numel, p++)
        memcpy(m->params[p].grad, buf + off, sizeof(float) * (size_t)m->params[p].numel);
    return LF_OK;
}

int lf_model_run_sync(lf_model *m, float *m_moments, float *v_moments) {
    if (m->cuda_model == NULL) return LF_OK; // the host's params and moments are the run's
    return lf_model_cuda_optimizer_sync(m, m_moments, v_moments);
}

void lf_model_run_end(lf_model *m) {
    if (m->cuda_model != NULL) lf_model_cuda_optimizer_end(m);
}

lf_weight lf_linear_weight(const lf_model *m, const lf_linear *l) {
    if (l->weight_param >= 0) return lf_weight_f32(m->params[l->weight_param].data);
    return m->frozen[l->weight].w;
}

const float *lf_linear_bias(const lf_model *m, const lf_linear *l) {
    if (l->bias_param >= 0) return m->params[l->bias_param].data;
    return l->bias >= 0 ? (const float *)m->frozen[l->bias].w.data : NULL;
}

// the linear's weight packed for bf16 products, or NULL: f32 (trained, or the model computes in f32)
static const matmul_bf16_weight *bf16_weight(const lf_model *m, const lf_linear *l) {
    return m->cpu_dtype == LF_BF16 && m->bf16 != NULL ? m->bf16[l - m->linears] : NULL;
}

static void bf16_status(lf_model *m, int rc) {
    if (rc != LF_OK && m->bf16_rc == LF_OK) m->bf16_rc = rc;
}

size_t lf_lora_saved_floats(const lf_model *m, int T, int in) {
    return lora_saved_floats(T, in, m->lora.r > 0 ? m->lora.r : 1, lf_lora_dropout(m));
}

void lf_linear_forward(lf_model *m, const lf_linear *l, float *out, float *lora_saved, float *xd,
                       const float *x, int T, float *scratch) {
    const matmul_bf16_weight *w = bf16_weight(m, l);
    if (w != NULL)
        bf16_status(m, matmul_bf16_forward(out, x, w, lf_linear_bias(m, l), T, m->bf16_scratch));
    else
        matmul_forward(out, x, lf_linear_weight(m, l), lf_linear_bias(m, l), T, l->in, l->out, 0, scratch);
    if (l->lora_a < 0) return;
    lora_forward(out, lora_saved, xd, x, m->params[l->lora_a].data, m->params[l->lora_b].data, T, l->in,
                 l->out, m->lora.r, m->lora.scaling, lf_lora_dropout(m), lf_lora_key(m, l));
}

void lf_linear_backward(lf_model *m, const lf_linear *l, float *dx, int accumulate, float *du, float *xd,
                        const float *dout, const float *x, const float *lora_saved, int T, float *scratch) {
    float *dw = l->weight_param >= 0 ? m->params[l->weight_param].grad : NULL;
    float *db = l->bias_param >= 0 ? m->params[l->bias_param].grad : NULL;
    const matmul_bf16_weight *w = bf16_weight(m, l);
    if (w != NULL) // a frozen weight: no dw, db
        bf16_status(m, matmul_bf16_backward(dx, dout, w, T, accumulate, m->bf16_scratch));
    else
        matmul_backward(dx, dw, db, dout, x, lf_linear_weight(m, l), T, l->in, l->out, accumulate, scratch);
    if (l->lora_a < 0) return;
    lora_backward(dx, m->params[l->lora_a].grad, m->params[l->lora_b].grad, du, xd, dout, x, lora_saved,
                  m->params[l->lora_a].data, m->params[l->lora_b].data, T, l->in, l->out, m->lora.r,
                  m->lora.scaling, lf_lora_dropout(m));
}
