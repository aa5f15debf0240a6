// BERT and RoBERTa sequence classifiers on the device: the CUDA twin of csrc/models/encoder.c,
// op for op, with the same tables (m->arch_state is the host's enc_state, models/encoder.h) and
// the same dropout streams, so the GPU computes what the CPU computes. Composes launchers; no
// arithmetic here.
//
// Activations are of dm->dtype. The trained head (RoBERTa's classifier, BERT's classifier) runs
// in f32 on the pooled rows, as the CPU does, and gives the f32 logits. With gradient
// checkpointing only each layer's output is kept and backward recomputes the layer.
#include "activation.cuh"
#include "attention.cuh"
#include "convert.cuh"
#include "device_model.cuh"
#include "dropout.cuh"
#include "embedding.cuh"
#include "layernorm.cuh"
#include "linear.cuh"
#include "residual.cuh"

extern "C" {
#include "models/encoder.h"
}

// ----------------------------------------------------------------------------- activations

typedef struct {     // one layer's activations: (T, C) / (T, I) of the dtype, statistics f32
    void *q, *k, *v; // (T, C) each, rows ld apart (columns of one (T, 3C) matrix) when ld > 0
    int64_t ld;      // linears_layout's
    void *att, *r1, *x1, *r2, *out, *h, *g;
    float *m1, *s1, *m2, *s2, *lse, *u[ENC_N_LINEARS];
} layer_acts;

typedef struct {
    void *x0, *tmp;                      // embeddings: output, sum (T, C)
    float *em, *es;                      // embeddings' LayerNorm statistics (T,)
    void *pooled, *dpooled, *pd16, *d16; // (B, C) of the dtype: pooled rows and their gradient; BERT's pooler
    float *pooled32, *pd, *d, *t, *td;   // head (B, C) f32
    float *dh1, *dh2;                    // head backward (B, C) f32
    void *dres, *da, *db;                // backward (T, C)
    void *dqkv;                          // backward (T, 3C): dq, dk, dv laid out as the layer's q, k, v
    void *di1, *di2;                     // backward (T, I)
    void *lora_scratch, *att_scratch;
    char *layers; // num_layers blocks of layer_bytes (1 when checkpointing)
    void *xs;     // checkpointing: the num_layers layer outputs (T, C)
    size_t layer_bytes;
} enc_acts;

static int lora_rank(const lf_model_desc *m) { return m->lora.r > 0 ? m->lora.r : 1; }

static size_t layer_block(const lf_cuda_model *dm, char *base, int T, layer_acts *a) {
    const lf_model_desc *m = dm->host;
    size_t E = lf_cuda_dtype_size(dm->dtype), TC = (size_t)T * m->cfg.hidden_size * E,
           TI = (size_t)T * m->cfg.intermediate_size * E;
    lf_plan c = cuda_plan(base);
    a->q = lf_plan_take(&c, 3 * TC);
    a->k = a->v = NULL, a->ld = 0; // layer_at lays q, k, v out
    void **tc[] = {&a->att, &a->r1, &a->x1, &a->r2, &a->out};
    for (void **p : tc)
        *p = lf_plan_take(&c, TC);
    a->h = lf_plan_take(&c, TI);
    a->g = lf_plan_take(&c, TI);
    float **stats[] = {&a->m1, &a->s1, &a->m2, &a->s2};
    for (float **p : stats)
        *p = (float *)lf_plan_take(&c, (size_t)T * sizeof(float));
    a->lse = (float *)lf_plan_take(&c, (size_t)T * m->cfg.num_heads * sizeof(float));
    for (int k = 0; k < ENC_N_LINEARS; k++)
        a->u[k] = (float *)lf_plan_take(&c, (size_t)T * lora_rank(m) * sizeof(float));
    return c.used;
}

static size_t encoder_layout(const lf_cuda_model *dm, char *base, const lf_batch *b, enc_acts *a) {
    const lf_model_desc *m = dm->host;
    int T = b->T, B = b->B, C = m->cfg.hidden_size, L = m->cfg.num_layers, ckpt = m->gradient_checkpointing;
    size_t E = lf_cuda_dtype_size(dm->dtype), TC = (size_t)T * C * E,
           TI = (size_t)T * m->cfg.intermediate_size * E, BC = (size_t)B * C;
    lf_plan c = cuda_plan(base);
    void **tc[] = {&a->x0, &a->tmp, &a->dres, &a->da, &a->db};
    for (void **p : tc)
        *p = lf_plan_take(&c, TC);
    a->dqkv = lf_plan_take(&c, 3 * TC);
    a->di1 = lf_plan_take(&c, TI);
    a->di2 = lf_plan_take(&c, TI);
    a->em = (float *)lf_plan_take(&c, (size_t)T * sizeof(float));
    a->es = (float *)lf_plan_take(&c, (size_t)T * sizeof(float));
    void **bc16[] = {&a->pooled, &a->dpooled, &a->pd16, &a->d16};
    for (void **p : bc16)
        *p = lf_plan_take(&c, BC * E);
    float **bc32[] = {&a->pooled32, &a->pd, &a->d, &a->t, &a->td, &a->dh1, &a->dh2};
    for (float **p : bc32)
        *p = (float *)lf_plan_take(&c, BC * sizeof(float));
    a->lora_scratch = lf_plan_take(&c, linears_lora_scratch_bytes(m, T));
    a->att_scratch =
        lf_plan_take(&c, attention_scratch_bytes(T, m->cfg.num_heads, m->cfg.num_heads, m->cfg.head_dim));
    layer_acts unused;
    a->layer_bytes = layer_block(dm, NULL, T, &unused);
    a->layers = (char *)lf_plan_take(&c, a->layer_bytes * (size_t)(ckpt ? 1 : L));
    a->xs = lf_plan_take(&c, ckpt ? (size_t)L * TC : 0);
    return c.used;
}

static size_t encoder_workspace_bytes(const lf_cuda_model *dm, const lf_batch *b) {
    enc_acts a;
    return encoder_layout(dm, NULL, b, &a);
}

// the q, k, v linears of layer l
static void qkv_of(const lf_model_desc *m, int l, const lf_linear *qkv[3]) {
    const enc_layer *L = &((const enc_state *)m->arch_state)->layers[l];
    for (int k = 0; k < 3; k++)
        qkv[k] = &m->linears[L->lin[ENC_Q + k]];
}

// the activations of layer l; when checkpointing, the shared set with the output in xs[l]
static layer_acts layer_at(const lf_cuda_model *dm, const enc_acts *a, int l, int T) {
    layer_acts la;
    int ckpt = dm->host->gradient_checkpointing;
    layer_block(dm, a->layers + a->layer_bytes * (size_t)(ckpt ? 0 : l), T, &la);
    const lf_linear *qkv[3];
    qkv_of(dm->host, l, qkv);
    void *out[3];
    la.ld = linears_layout(dm, qkv, 3, la.q, T, out);
    la.q = out[0], la.k = out[1], la.v = out[2];
    if (ckpt)
        la.out = (char *)a->xs + (size_t)l * T * dm->host->cfg.hidden_size * lf_cuda_dtype_size(dm->dtype);
    return la;
}

// ----------------------------------------------------------------------------- forward

static float drop_p(const lf_model_desc *m, float p) { return m->training ? p : 0.0f; }

static const float *frozen_f32(const lf_cuda_model *dm, int i) { return (const float *)dm->frozen[i]; }

// the attention of a layer (its dropout stream goes to the launchers apart: layer_site(l, 0))
static attention_shape attn_shape(const lf_model_desc *m, const lf_batch *b) {
    attention_shape s = {};
    s.B = b->B;
    s.NH = s.NKV = m->cfg.num_heads;
    s.HD = m->cfg.head_dim;
    s.dropout = drop_p(m, m->cfg.attention_dropout);
    return s;
}

static int embedding_add(lf_cuda_model *dm, void *out, const int32_t *ids, int table, int T, int accumulate) {
    const lf_frozen *f = &dm->host->frozen[table];
    return embedding_forward_cuda(out, ids, dm->frozen[table], dm->frozen_dtype[table], (int)f->shape[0], T,
                                  (int)f->shape[1], accumulate, dm->dtype, dm->stream);
}

static int embeddings_forward(lf_cuda_model *dm, const enc_state *s, const lf_batch *b, enc_acts *a) {
    const lf_model_desc *m = dm->host;
    int T = b->T, C = m->cfg.hidden_size;
    if (int rc = embedding_add(dm, a->tmp, dm->batch.tokens, s->word, T, 0)) return rc;
    if (int rc = embedding_add(dm, a->tmp, dm->batch.positions, s->pos, T, 1)) return rc;
    if (int rc = embedding_add(dm, a->tmp, dm->batch.token_types, s->type, T, 1)) return rc;
    if (int rc =
            layernorm_forward_cuda(a->x0, a->em, a->es, a->tmp, frozen_f32(dm, s->ln_w),
                                   frozen_f32(dm, s->ln_b), T, C, m->cfg.norm_eps, dm->dtype, dm->stream))
        return rc;
    return dropout_forward_cuda(a->x0, a->x0, (int64_t)T * C, drop_p(m, m->cfg.hidden_dropout),
                                lf_cuda_dropout_key(dm, SITE_EMB), dm->dtype, dm->stream);
}

static int layer_forward(lf_cuda_model *dm, const enc_layer *L, const lf_batch *b, const void *x0,
                         layer_acts *la, int l) {
    const lf_model_desc *m = dm->host;
    const lf_linear *lin = m->linears;
    int T = b->T, C = m->cfg.hidden_size;
    lf_dtype dt = dm->dtype;
    float p = drop_p(m, m->cfg.hidden_dropout);
    const lf_linear *qkv[] = {&lin[L->lin[ENC_Q]], &lin[L->lin[ENC_K]], &lin[L->lin[ENC_V]]};
    void *out[] = {la->q, la->k, la->v};
    float *u[] = {la->u[ENC_Q], la->u[ENC_K], la->u[ENC_V]};
    if (int rc = linears_forward(dm, qkv, 3, out, la->ld, u, x0, T, dt)) return rc;
    const int64_t ld = la->ld > 0 ? la->ld : C;
    if (int rc = attention_forward_cuda(la->att, la->lse, la->q, la->k, la->v, ld, ld, dm->batch.offsets, T,
                                        b->max_len, attn_shape(m, b),
                                        lf_cuda_dropout_key(dm, layer_site(l, 0)), dt, dm->stream))
        return rc;
    if (int rc = linear_forward(dm, &lin[L->lin[ENC_O]], la->r1, la->u[ENC_O], la->att, T, dt)) return rc;
    // r1 = dropout(r1) + x0, x1 = LayerNorm(r1)
    if (int rc = dropout_residual_layernorm_forward_cuda(
            la->x1, la->m1, la->s1, la->r1, la->r1, x0, frozen_f32(dm, L->ln1_w), frozen_f32(dm, L->ln1_b), T,
            C, m->cfg.norm_eps, p, lf_cuda_dropout_key(dm, layer_site(l, 1)), dt, dm->stream))
        return rc;
    if (int rc = linear_forward(dm, &lin[L->lin[ENC_I]], la->h, la->u[ENC_I], la->x1, T, dt)) return rc;
    if (int rc = gelu_forward_cuda(la->g, la->h, (int64_t)T * m->cfg.intermediate_size, dt, dm->stream))
        return rc;
    if (int rc = linear_forward(dm, &lin[L->lin[ENC_F]], la->r2, la->u[ENC_F], la->g, T, dt)) return rc;
    // r2 = dropout(r2) + x1, out = LayerNorm(r2)
    return dropout_residual_layernorm_forward_cuda(
        la->out, la->m2, la->s2, la->r2, la->r2, la->x1, frozen_f32(dm, L->ln2_w), frozen_f32(dm, L->ln2_b),
        T, C, m->cfg.norm_eps, p, lf_cuda_dropout_key(dm, layer_site(l, 2)), dt, dm->stream);
}

// The pooled rows through the head into dm->logits. RoBERTa: dropout, dense, tanh, dropout,
// out_proj, all trained, in f32. BERT: the frozen pooler (dense, tanh) in the dtype, then
// dropout and the trained classifier in f32.
static int head_forward(lf_cuda_model *dm, const enc_state *s, const lf_batch *b, const void *x,
                        enc_acts *a) {
    const lf_model_desc *m = dm->host;
    int B = b->B, C = m->cfg.hidden_size;
    int64_t BC = (int64_t)B * C;
    float p = drop_p(m, m->cfg.classifier_dropout);
    const lf_linear *dense = &m->linears[s->head_dense], *out = &m->linears[s->head_out];
    if (int rc = gather_rows_forward_cuda(a->pooled, x, dm->batch.pool_index, B, C, dm->dtype, dm->stream))
        return rc;
    if (s->pre_dropout) { // RoBERTa
        if (int rc = convert_cuda(a->pooled32, LF_F32, a->pooled, dm->dtype, BC, dm->stream)) return rc;
        if (int rc = dropout_forward_cuda(a->pd, a->pooled32, BC, p, lf_cuda_dropout_key(dm, SITE_HEAD_IN),
                                          LF_F32, dm->stream))
            return rc;
        if (int rc = linear_forward(dm, dense, a->d, NULL, a->pd, B, LF_F32)) return rc;
        if (int rc = tanh_forward_cuda(a->t, a->d, BC, LF_F32, dm->stream)) return rc;
    } else { // BERT: the pooler is frozen, in the dtype
        if (int rc = linear_forward(dm, dense, a->d16, NULL, a->pooled, B, dm->dtype)) return rc;
        if (int rc = tanh_forward_cuda(a->d16, a->d16, BC, dm->dtype, dm->stream)) return rc;
        if (int rc = convert_cuda(a->t, LF_F32, a->d16, dm->dtype, BC, dm->stream)) return rc;
    }
    if (int rc = dropout_forward_cuda(a->td, a->t, BC, p, lf_cuda_dropout_key(dm, SITE_HEAD_MID), LF_F32,
                                      dm->stream))
        return rc;
    return linear_forward(dm, out, dm->logits, NULL, a->td, B, LF_F32);
}

static int encoder_forward(lf_cuda_model *dm, const lf_batch *b) {
    const lf_model_desc *m = dm->host;
    const enc_state *s = (const enc_state *)m->arch_state;
    enc_acts a;
    encoder_layout(dm, (char *)dm->work, b, &a);
    if (int rc = embeddings_forward(dm, s, b, &a)) return rc;
    const void *x = a.x0;
    for (int l = 0; l < m->cfg.num_layers; l++) {
        layer_acts la = layer_at(dm, &a, l, b->T);
        if (int rc = layer_forward(dm, &s->layers[l], b, x, &la, l)) return rc;
        x = la.out;
    }
    return head_forward(dm, s, b, x, &a);
}

// ----------------------------------------------------------------------------- backward

static int zero(lf_cuda_model *dm, void *x, size_t bytes) {
    return (int)cudaMemsetAsync(x, 0, bytes, dm->stream);
}

// a->dres: (T, C) in = d layer output, out = d layer input (when need_dx)
static int layer_backward(lf_cuda_model *dm, const enc_layer *L, const lf_batch *b, const void *x0,
                          const layer_acts *la, enc_acts *a, int l, int need_dx) {
    const lf_model_desc *m = dm->host;
    const lf_linear *lin = m->linears;
    int T = b->T, C = m->cfg.hidden_size;
    int64_t TI = (int64_t)T * m->cfg.intermediate_size;
    lf_dtype dt = dm->dtype;
    float p = drop_p(m, m->cfg.hidden_dropout);
    // db = d x1 through the residual, da = d r2 (the FFN's output) through the dropout
    if (int rc = dropout_residual_layernorm_backward_cuda(
            a->db, a->da, NULL, NULL, a->dres, la->r2, frozen_f32(dm, L->ln2_w), la->m2, la->s2, T, C, p,
            lf_cuda_dropout_key(dm, layer_site(l, 2)), dt, dm->stream))
        return rc;
    if (int rc = linear_backward(dm, &lin[L->lin[ENC_F]], a->di1, DX_WRITE, a->lora_scratch, a->da, la->g,
                                 la->u[ENC_F], T, dt))
        return rc;
    if (int rc = gelu_backward_cuda(a->di2, la->h, a->di1, TI, 0, dt, dm->stream)) return rc;
    if (int rc = linear_backward(dm, &lin[L->lin[ENC_I]], a->db, DX_ADD, a->lora_scratch, a->di2, la->x1,
                                 la->u[ENC_I], T, dt))
        return rc;
    // dres = d x0 through the residual, da = d r1 (the attention output projection's) through the dropout
    if (int rc = dropout_residual_layernorm_backward_cuda(
            a->dres, a->da, NULL, NULL, a->db, la->r1, frozen_f32(dm, L->ln1_w), la->m1, la->s1, T, C, p,
            lf_cuda_dropout_key(dm, layer_site(l, 1)), dt, dm->stream))
        return rc;
    // db = d att
    if (int rc = linear_backward(dm, &lin[L->lin[ENC_O]], a->db, DX_WRITE, a->lora_scratch, a->da, la->att,
                                 la->u[ENC_O], T, dt))
        return rc;
    const lf_linear *qkv[] = {&lin[L->lin[ENC_Q]], &lin[L->lin[ENC_K]], &lin[L->lin[ENC_V]]};
    void *dqkv[3];
    linears_layout(dm, qkv, 3, a->dqkv, T, dqkv);
    const int64_t ld = la->ld > 0 ? la->ld : C;
    if (int rc = attention_backward_cuda(dqkv[0], dqkv[1], dqkv[2], 0, a->db, la->att, la->lse, la->q, la->k,
                                         la->v, ld, ld, dm->batch.offsets, T, b->max_len, attn_shape(m, b),
                                         lf_cuda_dropout_key(dm, layer_site(l, 0)), a->att_scratch, dt,
                                         dm->stream))
        return rc;
    void *dx = need_dx ? a->dres : NULL;
    float *u[] = {la->u[ENC_Q], la->u[ENC_K], la->u[ENC_V]};
    return linears_backward(dm, qkv, 3, dx, DX_ADD, a->lora_scratch, dqkv, la->ld, x0, u, T, dt);
}

// dm->dlogits -> head grads; d pooled rows scattered into a->dres (when need_dx)
static int head_backward(lf_cuda_model *dm, const enc_state *s, const lf_batch *b, enc_acts *a, int need_dx) {
    const lf_model_desc *m = dm->host;
    int B = b->B, C = m->cfg.hidden_size;
    int64_t BC = (int64_t)B * C;
    size_t E = lf_cuda_dtype_size(dm->dtype);
    float p = drop_p(m, m->cfg.classifier_dropout);
    const lf_linear *dense = &m->linears[s->head_dense], *out = &m->linears[s->head_out];
    if (int rc = linear_backward(dm, out, a->dh1, DX_WRITE, NULL, dm->dlogits, a->td, NULL, B, LF_F32))
        return rc;
    if (int rc = dropout_backward_inplace_cuda(a->dh1, BC, p, lf_cuda_dropout_key(dm, SITE_HEAD_MID), LF_F32,
                                               dm->stream))
        return rc;
    if (int rc = zero(dm, a->dh2, BC * sizeof(float))) return rc;
    if (int rc = tanh_backward_cuda(a->dh2, a->t, a->dh1, BC, LF_F32, dm->stream)) return rc;
    if (s->pre_dropout) { // RoBERTa: dense is trained, in f32
        if (int rc = linear_backward(dm, dense, need_dx ? a->dh1 : NULL, DX_WRITE, NULL, a->dh2, a->pd, NULL,
                                     B, LF_F32))
            return rc;
        if (!need_dx) return 0;
        if (int rc = dropout_backward_inplace_cuda(a->dh1, BC, p, lf_cuda_dropout_key(dm, SITE_HEAD_IN),
                                                   LF_F32, dm->stream))
            return rc;
        if (int rc = convert_cuda(a->dpooled, dm->dtype, a->dh1, LF_F32, BC, dm->stream)) return rc;
    } else { // BERT: the frozen pooler, in the dtype
        if (!need_dx) return 0;
        if (int rc = convert_cuda(a->pd16, dm->dtype, a->dh2, LF_F32, BC, dm->stream)) return rc;
        if (int rc = linear_backward(dm, dense, a->dpooled, DX_WRITE, NULL, a->pd16, a->pooled, NULL, B,
                                     dm->dtype))
            return rc;
    }
    if (int rc = zero(dm, a->dres, (size_t)b->T * C * E)) return rc;
    return gather_rows_backward_cuda(a->dres, a->dpooled, dm->batch.pool_index, B, C, dm->dtype, dm->stream);
}

static int encoder_backward(lf_cuda_model *dm, const lf_batch *b) {
    const lf_model_desc *m = dm->host;
    const enc_state *s = (const enc_state *)m->arch_state;
    enc_acts a;
    encoder_layout(dm, (char *)dm->work, b, &a);
    int lowest = lf_lowest_lora_layer(m->linears, m->n_linears, m->cfg.num_layers);
    if (int rc = head_backward(dm, s, b, &a, lowest < m->cfg.num_layers)) return rc;
    // the attention backward takes its dq sums zeroed and leaves them so: once per step
    if (int rc = zero(dm, a.att_scratch,
                      attention_scratch_bytes(b->T, m->cfg.num_heads, m->cfg.num_heads, m->cfg.head_dim)))
        return rc;
    for (int l = m->cfg.num_layers - 1; l >= lowest; l--) {
        layer_acts la = layer_at(dm, &a, l, b->T);
        const void *x0 = l == 0 ? a.x0 : layer_at(dm, &a, l - 1, b->T).out;
        if (m->gradient_checkpointing) {
            if (int rc = layer_forward(dm, &s->layers[l], b, x0, &la, l)) return rc;
        }
        if (int rc = layer_backward(dm, &s->layers[l], b, x0, &la, &a, l, l > lowest)) return rc;
    }
    return 0;
}

// every layer's q, k, v weights side by side, and their biases (when all three have one)
static void encoder_frozen_chains(const lf_model_desc *m, int *next) {
    for (int l = 0; l < m->cfg.num_layers; l++) {
        const lf_linear *qkv[3];
        qkv_of(m, l, qkv);
        linears_side_by_side(qkv, 3, next);
    }
}

const lf_cuda_arch lf_cuda_arch_encoder = {"encoder", encoder_workspace_bytes, encoder_forward,
                                           encoder_backward, encoder_frozen_chains};
