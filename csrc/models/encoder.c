// BERT and RoBERTa sequence classifiers: embeddings, post-LN transformer layers, the
// classification head. Composes ops; no arithmetic here.
// With m->gradient_checkpointing only each layer's output is kept (one set of layer
// activations is shared) and backward recomputes the layer; the counter-based dropout masks
// make the recomputation exact.
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "models/encoder.h"
#include "models/model.h"
#include "models/plan.h"
#include "ops/activation.h"
#include "ops/attention.h"
#include "ops/dropout.h"
#include "ops/embedding.h"
#include "ops/layernorm.h"
#include "ops/matmul.h"
#include "ops/residual.h"

static const char *const encoder_targets[ENC_N_LINEARS] = {
    "attention.self.query",   "attention.self.key", "attention.self.value",
    "attention.output.dense", "intermediate.dense", "output.dense",
};

// ----------------------------------------------------------------------------- building

static int add_layer_norm(lf_model *m, const char *prefix, int *w, int *b) {
    char name[320];
    snprintf(name, sizeof name, "%s.weight", prefix);
    *w = lf_model_add_frozen(m, name, 1, m->cfg.hidden_size, 1);
    snprintf(name, sizeof name, "%s.bias", prefix);
    *b = lf_model_add_frozen(m, name, 1, m->cfg.hidden_size, 1);
    return *w < 0 || *b < 0 ? LF_ENOMEM : LF_OK;
}

static int build_layer(lf_model *m, enc_layer *L, const char *base, int l) {
    const lf_model_config *c = &m->cfg;
    int C = c->hidden_size,
        sizes[ENC_N_LINEARS][2] = {
            {C, C}, {C, C}, {C, C}, {C, C}, {C, c->intermediate_size}, {c->intermediate_size, C}};
    char prefix[256];
    for (int k = 0; k < ENC_N_LINEARS; k++) {
        snprintf(prefix, sizeof prefix, "%sencoder.layer.%d.%s", base, l, encoder_targets[k]);
        L->lin[k] = lf_model_add_linear(m, prefix, sizes[k][0], sizes[k][1], 1, 0, layer_site(l, 3 + k));
        if (L->lin[k] < 0) return LF_ENOMEM;
        lf_model_set_layer_linear(m, L->lin[k], l, k);
    }
    snprintf(prefix, sizeof prefix, "%sencoder.layer.%d.attention.output.LayerNorm", base, l);
    if (add_layer_norm(m, prefix, &L->ln1_w, &L->ln1_b) != LF_OK) return LF_ENOMEM;
    snprintf(prefix, sizeof prefix, "%sencoder.layer.%d.output.LayerNorm", base, l);
    return add_layer_norm(m, prefix, &L->ln2_w, &L->ln2_b);
}

static int build_embeddings(lf_model *m, enc_state *s, const char *base) {
    const lf_model_config *c = &m->cfg;
    char name[256];
    snprintf(name, sizeof name, "%sembeddings.word_embeddings.weight", base);
    s->word = lf_model_add_frozen(m, name, 2, c->vocab_size, c->hidden_size);
    snprintf(name, sizeof name, "%sembeddings.position_embeddings.weight", base);
    s->pos = lf_model_add_frozen(m, name, 2, c->max_positions, c->hidden_size);
    snprintf(name, sizeof name, "%sembeddings.token_type_embeddings.weight", base);
    s->type = lf_model_add_frozen(m, name, 2, c->type_vocab_size, c->hidden_size);
    snprintf(name, sizeof name, "%sembeddings.LayerNorm", base);
    if (s->word < 0 || s->pos < 0 || s->type < 0) return LF_ENOMEM;
    return add_layer_norm(m, name, &s->ln_w, &s->ln_b);
}

static int build_head(lf_model *m, enc_state *s) {
    int C = m->cfg.hidden_size, NL = m->cfg.num_labels;
    if (m->cfg.arch == LF_ARCH_ROBERTA) { // RobertaClassificationHead, trained in full
        s->pre_dropout = 1;
        s->head_dense = lf_model_add_linear(m, "classifier.dense", C, C, 1, 1, SITE_HEAD_DENSE);
        s->head_out = lf_model_add_linear(m, "classifier.out_proj", C, NL, 1, 1, SITE_HEAD_OUT);
    } else { // BertPooler (frozen) + classifier (trained in full)
        s->pre_dropout = 0;
        s->head_dense = lf_model_add_linear(m, "bert.pooler.dense", C, C, 1, 0, SITE_HEAD_DENSE);
        s->head_out = lf_model_add_linear(m, "classifier", C, NL, 1, 1, SITE_HEAD_OUT);
    }
    return s->head_dense < 0 || s->head_out < 0 ? LF_ENOMEM : LF_OK;
}

static int encoder_build(lf_model *m) {
    const lf_model_config *c = &m->cfg;
    if (c->num_kv_heads != c->num_heads || c->head_dim * c->num_heads != c->hidden_size)
        return lf_error(LF_EINVAL, "config: hidden_size %d must equal num_attention_heads %d x head size",
                        c->hidden_size, c->num_heads);
    if (c->type_vocab_size < 1) return lf_error(LF_EINVAL, "config: type_vocab_size must be >= 1");
    enc_state *s = calloc(1, sizeof *s + (size_t)c->num_layers * sizeof(enc_layer));
    if (s == NULL) return lf_error(LF_ENOMEM, "out of memory");
    m->arch_state = s;
    const char *base = c->arch == LF_ARCH_ROBERTA ? "roberta." : "bert.";
    if (build_embeddings(m, s, base) != LF_OK) return lf_error_code();
    for (int l = 0; l < c->num_layers; l++)
        if (build_layer(m, &s->layers[l], base, l) != LF_OK) return lf_error_code();
    return build_head(m, s);
}

// ----------------------------------------------------------------------------- activations

typedef struct {
    float *q, *k, *v, *att, *lse, *r1, *m1, *s1, *x1, *h, *g, *r2, *m2, *s2, *out;
    float *u[ENC_N_LINEARS];
} layer_acts;

typedef struct {
    float *x0, *tmp, *em, *es;            // embeddings: output, sum, LN stats
    float *pooled, *pd, *d, *t, *td;      // head (B, C)
    float *dres, *da, *db, *dq, *dk, *dv; // backward (T, C)
    float *di, *du, *xd;                  // backward (T, I), (T, r), (T, max(C, I))
    float *dh1, *dh2;                     // head backward (B, C)
    float *mm_scratch, *att_scratch;      // op scratch
    float *layers;                        // num_layers blocks of layer_floats (1 when checkpointing)
    float *xs;                            // checkpointing: the num_layers layer outputs (T, C)
    size_t layer_floats;
} enc_acts;

static int lora_rank(const lf_model *m) { return m->lora.r > 0 ? m->lora.r : 1; }

// the activations of one layer from base; returns their floats
static size_t layer_block(const lf_model *m, float *base, int T, layer_acts *a) {
    lf_plan p = lf_plan_start(base, LF_CPU_ALIGN);
    size_t TC = (size_t)T * m->cfg.hidden_size, TI = (size_t)T * m->cfg.intermediate_size;
    float **tc[] = {&a->q, &a->k, &a->v, &a->att, &a->r1, &a->x1, &a->r2, &a->out};
    for (size_t i = 0; i < sizeof tc / sizeof tc[0]; i++)
        *tc[i] = lf_plan_floats(&p, TC);
    float **t1[] = {&a->m1, &a->s1, &a->m2, &a->s2};
    for (size_t i = 0; i < sizeof t1 / sizeof t1[0]; i++)
        *t1[i] = lf_plan_floats(&p, (size_t)T);
    a->lse = lf_plan_floats(&p, (size_t)T * m->cfg.num_heads);
    a->h = lf_plan_floats(&p, TI);
    a->g = lf_plan_floats(&p, TI);
    int wide = m->cfg.hidden_size > m->cfg.intermediate_size ? m->cfg.hidden_size : m->cfg.intermediate_size;
    for (int k = 0; k < ENC_N_LINEARS; k++)
        a->u[k] = lf_plan_floats(&p, lf_lora_saved_floats(m, T, wide));
    return p.used / sizeof(float);
}

static size_t max_sz(size_t a, size_t b) { return a > b ? a : b; }

static size_t mm_scratch_floats(const lf_model *m) {
    size_t n = 0;
    for (int i = 0; i < m->n_linears; i++) {
        const lf_linear *l = &m->linears[i];
        n = max_sz(n, matmul_scratch_floats(l->in, l->out, lf_linear_weight(m, l).dtype));
    }
    return n;
}

// the workspace of a step of T tokens and B sequences from base (NULL: count); returns its floats
static size_t encoder_layout(const lf_model *m, float *base, int T, int B, enc_acts *a) {
    lf_plan p = lf_plan_start(base, LF_CPU_ALIGN);
    size_t C = (size_t)m->cfg.hidden_size, I = (size_t)m->cfg.intermediate_size;
    size_t TC = (size_t)T * C, BC = (size_t)B * C, TI = (size_t)T * I;
    lf_keep keep = lf_model_keep(m);
    int back = keep != LF_KEEP_NONE; // backward's buffers
    float **tc[] = {&a->x0, &a->tmp}, **dtc[] = {&a->dres, &a->da, &a->db, &a->dq, &a->dk, &a->dv};
    for (size_t i = 0; i < sizeof tc / sizeof tc[0]; i++)
        *tc[i] = lf_plan_floats(&p, TC);
    for (size_t i = 0; i < sizeof dtc / sizeof dtc[0]; i++)
        *dtc[i] = lf_plan_floats(&p, back ? TC : 0);
    float **bc[] = {&a->pooled, &a->pd, &a->d, &a->t, &a->td}, **dbc[] = {&a->dh1, &a->dh2};
    for (size_t i = 0; i < sizeof bc / sizeof bc[0]; i++)
        *bc[i] = lf_plan_floats(&p, BC);
    for (size_t i = 0; i < sizeof dbc / sizeof dbc[0]; i++)
        *dbc[i] = lf_plan_floats(&p, back ? BC : 0);
    a->em = lf_plan_floats(&p, (size_t)T);
    a->es = lf_plan_floats(&p, (size_t)T);
    a->di = lf_plan_floats(&p, back ? TI : 0);
    a->du = lf_plan_floats(&p, back ? (size_t)T * lora_rank(m) : 0);
    a->xd = lf_plan_floats(&p, (size_t)T * max_sz(C, I));
    a->mm_scratch = lf_plan_floats(&p, mm_scratch_floats(m));
    a->att_scratch = lf_plan_floats(&p, attention_scratch_floats(T, omp_get_max_threads()));
    layer_acts la;
    a->layer_floats = layer_block(m, NULL, T, &la);
    int L = m->cfg.num_layers;
    a->layers = lf_plan_floats(&p, a->layer_floats * (size_t)(keep == LF_KEEP_ALL ? L : 1));
    a->xs = lf_plan_floats(&p, keep == LF_KEEP_OUTPUTS ? (size_t)L * TC : keep == LF_KEEP_NONE ? 2 * TC : 0);
    return p.used / sizeof(float);
}

static size_t encoder_workspace_floats(const lf_model *m, int T, int B, int max_len) {
    (void)max_len;
    enc_acts a;
    return encoder_layout(m, NULL, T, B, &a);
}

// the activations of layer l; when checkpointing, the shared set with the output in xs[l]; in a
// forward alone, the shared set with the outputs in xs[0] and xs[1] in turn
static layer_acts layer_at(const lf_model *m, const enc_acts *a, int l, int T) {
    layer_acts la;
    lf_keep keep = lf_model_keep(m);
    size_t TC = (size_t)T * m->cfg.hidden_size;
    layer_block(m, a->layers + a->layer_floats * (size_t)(keep == LF_KEEP_ALL ? l : 0), T, &la);
    if (keep == LF_KEEP_OUTPUTS) la.out = a->xs + (size_t)l * TC;
    if (keep == LF_KEEP_NONE) la.out = a->xs + (size_t)(l % 2) * TC;
    return la;
}

// ----------------------------------------------------------------------------- forward

static float drop_p(const lf_model *m, float p) { return m->training ? p : 0.0f; }

static const float *frozen_f32(const lf_model *m, int i) { return (const float *)m->frozen[i].w.data; }

static attention_shape attn_shape(const lf_model *m, const lf_batch *b, int l) {
    return (attention_shape){.B = b->B,
                             .NH = m->cfg.num_heads,
                             .NKV = m->cfg.num_heads,
                             .HD = m->cfg.head_dim,
                             .dropout = drop_p(m, m->cfg.attention_dropout),
                             .key = lf_model_dropout_key(m, layer_site(l, 0))};
}

static void embeddings_forward(lf_model *m, const enc_state *s, const lf_batch *b, enc_acts *a) {
    int T = b->T, C = m->cfg.hidden_size;
    embedding_forward(a->tmp, b->tokens, m->frozen[s->word].w, T, C, 0);
    embedding_forward(a->tmp, b->positions, m->frozen[s->pos].w, T, C, 1);
    embedding_forward(a->tmp, b->token_types, m->frozen[s->type].w, T, C, 1);
    layernorm_forward(a->x0, a->em, a->es, a->tmp, frozen_f32(m, s->ln_w), frozen_f32(m, s->ln_b), T, C,
                      m->cfg.norm_eps);
    dropout_forward(a->x0, a->x0, (int64_t)T * C, drop_p(m, m->cfg.hidden_dropout),
                    lf_model_dropout_key(m, SITE_EMB));
}

static void layer_forward(lf_model *m, const enc_layer *L, const lf_batch *b, const float *x0, layer_acts *la,
                          enc_acts *a, int l) {
    int T = b->T, C = m->cfg.hidden_size;
    const lf_linear *lin = m->linears;
    float p = drop_p(m, m->cfg.hidden_dropout);
    lf_linear_forward(m, &lin[L->lin[ENC_Q]], la->q, la->u[ENC_Q], a->xd, x0, T, a->mm_scratch);
    lf_linear_forward(m, &lin[L->lin[ENC_K]], la->k, la->u[ENC_K], a->xd, x0, T, a->mm_scratch);
    lf_linear_forward(m, &lin[L->lin[ENC_V]], la->v, la->u[ENC_V], a->xd, x0, T, a->mm_scratch);
    attention_forward(la->att, la->lse, la->q, la->k, la->v, b->offsets, attn_shape(m, b, l), a->att_scratch);
    lf_linear_forward(m, &lin[L->lin[ENC_O]], la->r1, la->u[ENC_O], a->xd, la->att, T, a->mm_scratch);
    // r1 = dropout(r1) + x0, x1 = LayerNorm(r1)
    dropout_residual_layernorm_forward(la->x1, la->m1, la->s1, la->r1, la->r1, x0, frozen_f32(m, L->ln1_w),
                                       frozen_f32(m, L->ln1_b), T, C, m->cfg.norm_eps, p,
                                       lf_model_dropout_key(m, layer_site(l, 1)));
    lf_linear_forward(m, &lin[L->lin[ENC_I]], la->h, la->u[ENC_I], a->xd, la->x1, T, a->mm_scratch);
    gelu_forward(la->g, la->h, (int64_t)T * m->cfg.intermediate_size);
    lf_linear_forward(m, &lin[L->lin[ENC_F]], la->r2, la->u[ENC_F], a->xd, la->g, T, a->mm_scratch);
    // r2 = dropout(r2) + x1, out = LayerNorm(r2)
    dropout_residual_layernorm_forward(la->out, la->m2, la->s2, la->r2, la->r2, la->x1,
                                       frozen_f32(m, L->ln2_w), frozen_f32(m, L->ln2_b), T, C,
                                       m->cfg.norm_eps, p, lf_model_dropout_key(m, layer_site(l, 2)));
}

static void head_forward(lf_model *m, const enc_state *s, const lf_batch *b, const float *x, enc_acts *a,
                         float *logits) {
    int B = b->B, C = m->cfg.hidden_size;
    float p = drop_p(m, m->cfg.classifier_dropout);
    gather_rows_forward(a->pooled, x, b->pool_index, B, C);
    dropout_forward(a->pd, a->pooled, (int64_t)B * C, s->pre_dropout ? p : 0.0f,
                    lf_model_dropout_key(m, SITE_HEAD_IN));
    lf_linear_forward(m, &m->linears[s->head_dense], a->d, NULL, NULL, a->pd, B, a->mm_scratch);
    tanh_forward(a->t, a->d, (int64_t)B * C);
    dropout_forward(a->td, a->t, (int64_t)B * C, p, lf_model_dropout_key(m, SITE_HEAD_MID));
    lf_linear_forward(m, &m->linears[s->head_out], logits, NULL, NULL, a->td, B, a->mm_scratch);
}

static int encoder_forward(lf_model *m, const lf_batch *b, float *logits) {
    const enc_state *s = m->arch_state;
    enc_acts a;
    encoder_layout(m, m->work, b->T, b->B, &a);
    embeddings_forward(m, s, b, &a);
    const float *x = a.x0;
    for (int l = 0; l < m->cfg.num_layers; l++) {
        layer_acts la = layer_at(m, &a, l, b->T);
        layer_forward(m, &s->layers[l], b, x, &la, &a, l);
        x = la.out;
    }
    head_forward(m, s, b, x, &a, logits);
    return LF_OK;
}

// ----------------------------------------------------------------------------- backward

static void zero(float *x, int64_t n) { memset(x, 0, (size_t)n * sizeof(float)); }

// dres: (T, C) in = d layer output, out = d layer input (when need_dx)
static void layer_backward(lf_model *m, const enc_layer *L, const lf_batch *b, const float *x0,
                           const layer_acts *la, enc_acts *a, int l, int need_dx) {
    int T = b->T, C = m->cfg.hidden_size;
    int64_t TI = (int64_t)T * m->cfg.intermediate_size;
    const lf_linear *lin = m->linears;
    float p = drop_p(m, m->cfg.hidden_dropout);
    // db = d x1 through the residual, da = d FFN output through the dropout
    dropout_residual_layernorm_backward(a->db, a->da, NULL, NULL, a->dres, la->r2, frozen_f32(m, L->ln2_w),
                                        la->m2, la->s2, T, C, p, lf_model_dropout_key(m, layer_site(l, 2)));
    lf_linear_backward(m, &lin[L->lin[ENC_F]], a->di, 0, a->du, a->xd, a->da, la->g, la->u[ENC_F], T,
                       a->mm_scratch);
    gelu_backward(a->di, la->h, a->di, TI, 0); // in place
    lf_linear_backward(m, &lin[L->lin[ENC_I]], a->db, 1, a->du, a->xd, a->di, la->x1, la->u[ENC_I], T,
                       a->mm_scratch);
    // dres = d x0 through the residual, da = d attention output through the dropout
    dropout_residual_layernorm_backward(a->dres, a->da, NULL, NULL, a->db, la->r1, frozen_f32(m, L->ln1_w),
                                        la->m1, la->s1, T, C, p, lf_model_dropout_key(m, layer_site(l, 1)));
    lf_linear_backward(m, &lin[L->lin[ENC_O]], a->db, 0, a->du, a->xd, a->da, la->att, la->u[ENC_O], T,
                       a->mm_scratch); // d att
    attention_backward(a->dq, a->dk, a->dv, 0, a->db, la->att, la->lse, la->q, la->k, la->v, b->offsets,
                       attn_shape(m, b, l), a->att_scratch);
    float *dx = need_dx ? a->dres : NULL;
    lf_linear_backward(m, &lin[L->lin[ENC_Q]], dx, 1, a->du, a->xd, a->dq, x0, la->u[ENC_Q], T,
                       a->mm_scratch);
    lf_linear_backward(m, &lin[L->lin[ENC_K]], dx, 1, a->du, a->xd, a->dk, x0, la->u[ENC_K], T,
                       a->mm_scratch);
    lf_linear_backward(m, &lin[L->lin[ENC_V]], dx, 1, a->du, a->xd, a->dv, x0, la->u[ENC_V], T,
                       a->mm_scratch);
}

// d logits -> head grads; d pooled rows scattered into a->dres (when need_dx)
static void head_backward(lf_model *m, const enc_state *s, const lf_batch *b, enc_acts *a,
                          const float *dlogits, int need_dx) {
    int B = b->B, C = m->cfg.hidden_size;
    int64_t BC = (int64_t)B * C;
    float p = drop_p(m, m->cfg.classifier_dropout);
    lf_linear_backward(m, &m->linears[s->head_out], a->dh1, 0, NULL, NULL, dlogits, a->td, NULL, B,
                       a->mm_scratch);
    dropout_backward_inplace(a->dh1, BC, p, lf_model_dropout_key(m, SITE_HEAD_MID));
    zero(a->dh2, BC);
    tanh_backward(a->dh2, a->t, a->dh1, BC);
    lf_linear_backward(m, &m->linears[s->head_dense], need_dx ? a->dh1 : NULL, 0, NULL, NULL, a->dh2, a->pd,
                       NULL, B, a->mm_scratch);
    if (!need_dx) return;
    dropout_backward_inplace(a->dh1, BC, s->pre_dropout ? p : 0.0f, lf_model_dropout_key(m, SITE_HEAD_IN));
    zero(a->dres, (int64_t)b->T * C);
    gather_rows_backward(a->dres, a->dh1, b->pool_index, B, C);
}

static int encoder_backward(lf_model *m, const lf_batch *b, const float *dlogits) {
    const enc_state *s = m->arch_state;
    enc_acts a;
    encoder_layout(m, m->work, b->T, b->B, &a);
    int lowest = lf_model_lowest_lora_layer(m); // frozen layers below it need no backward
    head_backward(m, s, b, &a, dlogits, lowest < m->cfg.num_layers);
    for (int l = m->cfg.num_layers - 1; l >= lowest; l--) {
        layer_acts la = layer_at(m, &a, l, b->T);
        const float *x0 = l == 0 ? a.x0 : layer_at(m, &a, l - 1, b->T).out;
        if (m->gradient_checkpointing) layer_forward(m, &s->layers[l], b, x0, &la, &a, l);
        layer_backward(m, &s->layers[l], b, x0, &la, &a, l, l > lowest);
    }
    return LF_OK;
}

const lf_arch lf_arch_encoder = {
    .name = "encoder",
    .build = encoder_build,
    .workspace_floats = encoder_workspace_floats,
    .forward = encoder_forward,
    .backward = encoder_backward,
    .lora_targets = encoder_targets,
    .n_lora_targets = ENC_N_LINEARS,
};
