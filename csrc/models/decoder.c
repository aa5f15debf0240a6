// Llama / Mistral classifiers: embed_tokens -> L x [RMSNorm, GQA attention with RoPE (causal,
// optional sliding window), residual, RMSNorm, SwiGLU MLP, residual] -> final RMSNorm at the
// pooled tokens -> score. Every projection may carry LoRA. Composes csrc/ops; no arithmetic.
// With m->gradient_checkpointing only each layer's input is kept and backward recomputes it.
// The table indices and dropout stream sites are in models/decoder.h, shared with the CUDA decoder.
#include "models/decoder.h"
#include "models/model.h"

#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "models/plan.h"
#include "ops/attention.h"
#include "ops/embedding.h"
#include "ops/matmul.h"
#include "ops/residual.h"
#include "ops/rmsnorm.h"
#include "ops/rope.h"
#include "ops/silu_mul.h"

// module suffixes of the projections (peft matches LoRA targets against them), LoRA site order
static const char *const proj_names[DEC_NPROJ] = {
    "self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
    "mlp.gate_proj",    "mlp.up_proj",      "mlp.down_proj",
};

// Activations of one layer; x is its input (the residual stream).
typedef struct {
    float *x, *rstd1, *ln1;       // (T, C), (T), (T, C)
    float *q, *k, *v, *att, *lse; // (T, NH*D), (T, KV*D) x2, (T, NH*D), (T, NH)
    float *u[DEC_NPROJ];          // what each LoRA branch saves (u, dropout mask: ops/lora.h)
    float *x_mid, *rstd2, *ln2;   // (T, C), (T), (T, C)
    float *gate, *up, *act;       // (T, I)
} dec_acts;

// The workspace of one step, carved from m->work.
typedef struct {
    float *acts; // L activation sets of acts_stride floats, or 1 with checkpointing
    size_t acts_stride;
    float *xs;                   // ((L + 1), T, C) layer inputs with checkpointing; else final x (T, C)
    float *cos, *sin;            // (T, D/2)
    float *pooled, *rstdf, *lnf; // (B, C), (B), (B, C)
    float *dlnf, *dpooled;       // (B, C)
    float *mm_scratch, *att_scratch;
    float *dx, *dln;            // (T, C)
    float *dq, *dk, *dv, *datt; // (T, NH*D), (T, KV*D) x2, (T, NH*D)
    float *dgate, *dup, *dact;  // (T, I)
    float *du, *xd;             // (T, r), (T, max(C, I))
} dec_work;

static size_t max_size(size_t a, size_t b) { return a > b ? a : b; }

static int proj_out(const lf_model_config *c, int p) {
    int QD = c->num_heads * c->head_dim, KVD = c->num_kv_heads * c->head_dim;
    if (p == DEC_Q) return QD;
    if (p == DEC_K || p == DEC_V) return KVD;
    if (p == DEC_GATE || p == DEC_UP) return c->intermediate_size;
    return c->hidden_size;
}

static int proj_in(const lf_model_config *c, int p) {
    if (p == DEC_O) return c->num_heads * c->head_dim;
    if (p == DEC_DOWN) return c->intermediate_size;
    return c->hidden_size;
}

// ----------------------------------------------------------------------------
// tables

static int build_layer(lf_model *m, dec_layer *L, int l) {
    const lf_model_config *c = &m->cfg;
    int C = c->hidden_size;
    char name[192];
    snprintf(name, sizeof name, "model.layers.%d.input_layernorm.weight", l);
    L->input_norm = lf_model_add_frozen(m, name, 1, C, 1);
    if (L->input_norm < 0) return LF_EINVAL;
    for (int p = 0; p < DEC_NPROJ; p++) {
        snprintf(name, sizeof name, "model.layers.%d.%s", l, proj_names[p]);
        int i = lf_model_add_linear(m, name, proj_in(c, p), proj_out(c, p), 0, 0, dec_linear_site(l, p));
        if (i < 0) return LF_ENOMEM;
        lf_model_set_layer_linear(m, i, l, p);
        L->lin[p] = i;
        if (p == DEC_O) {
            snprintf(name, sizeof name, "model.layers.%d.post_attention_layernorm.weight", l);
            L->post_attention_norm = lf_model_add_frozen(m, name, 1, C, 1);
            if (L->post_attention_norm < 0) return LF_EINVAL;
        }
    }
    return LF_OK;
}

static int decoder_build(lf_model *m) {
    const lf_model_config *c = &m->cfg;
    int C = c->hidden_size;
    size_t layers = (size_t)c->num_layers * sizeof(dec_layer), norms = (size_t)(2 * c->num_layers + 1) * C;
    dec_state *s = calloc(1, sizeof *s + layers + norms * sizeof(float));
    if (s == NULL) return lf_error(LF_ENOMEM, "out of memory");
    s->norms = (float *)((char *)s + sizeof *s + layers);
    m->arch_state = s;
    s->embed = lf_model_add_frozen(m, "model.embed_tokens.weight", 2, c->vocab_size, C);
    if (s->embed < 0) return LF_EINVAL;
    for (int l = 0; l < c->num_layers; l++) {
        int rc = build_layer(m, &s->layers[l], l);
        if (rc != LF_OK) return rc;
    }
    s->final_norm = lf_model_add_frozen(m, "model.norm.weight", 1, C, 1);
    if (s->final_norm < 0) return LF_EINVAL;
    s->score = lf_model_add_linear(m, "score", C, c->num_labels, 0, 1, dec_score_site(c->num_layers));
    return s->score < 0 ? LF_EINVAL : LF_OK;
}

// ----------------------------------------------------------------------------
// workspace

static void carve_acts(dec_acts *a, lf_plan *cur, const lf_model *m, size_t T, int with_x) {
    const lf_model_config *c = &m->cfg;
    size_t C = c->hidden_size, QD = (size_t)c->num_heads * c->head_dim,
           KVD = (size_t)c->num_kv_heads * c->head_dim;
    size_t I = c->intermediate_size;
    a->x = with_x ? lf_plan_floats(cur, T * C) : NULL;
    a->rstd1 = lf_plan_floats(cur, T);
    a->ln1 = lf_plan_floats(cur, T * C);
    a->q = lf_plan_floats(cur, T * QD);
    a->k = lf_plan_floats(cur, T * KVD);
    a->v = lf_plan_floats(cur, T * KVD);
    a->att = lf_plan_floats(cur, T * QD);
    a->lse = lf_plan_floats(cur, T * c->num_heads);
    size_t wide = C > I ? C : I;
    wide = wide > QD ? wide : QD; // the widest input of a projection
    for (int p = 0; p < DEC_NPROJ; p++)
        a->u[p] = lf_plan_floats(cur, m->lora.r > 0 ? lf_lora_saved_floats(m, (int)T, (int)wide) : 0);
    a->x_mid = lf_plan_floats(cur, T * C);
    a->rstd2 = lf_plan_floats(cur, T);
    a->ln2 = lf_plan_floats(cur, T * C);
    a->gate = lf_plan_floats(cur, T * I);
    a->up = lf_plan_floats(cur, T * I);
    a->act = lf_plan_floats(cur, T * I);
}

// Lays out the workspace of a step of T tokens and B rows from base (NULL: count only);
// returns its floats.
static size_t carve(dec_work *w, const lf_model *m, float *base, size_t T, size_t B) {
    const lf_model_config *c = &m->cfg;
    int L = c->num_layers;
    lf_keep keep = lf_model_keep(m);
    size_t back = keep != LF_KEEP_NONE; // backward's buffers: 0 floats in a forward alone
    size_t C = c->hidden_size, QD = (size_t)c->num_heads * c->head_dim,
           KVD = (size_t)c->num_kv_heads * c->head_dim;
    size_t I = c->intermediate_size, wide = max_size(C, I), r = m->lora.r > 0 ? m->lora.r : 1;
    lf_plan cur = lf_plan_start(base, LF_CPU_ALIGN), one = lf_plan_start(NULL, LF_CPU_ALIGN);
    dec_acts unused;
    carve_acts(&unused, &one, m, T, keep == LF_KEEP_ALL);
    w->acts_stride = one.used / sizeof(float);
    w->acts = lf_plan_floats(&cur, (keep == LF_KEEP_ALL ? L : 1) * w->acts_stride);
    w->xs = lf_plan_floats(&cur, (keep == LF_KEEP_OUTPUTS ? L + 1 : keep == LF_KEEP_NONE ? 2 : 1) * T * C);
    w->cos = lf_plan_floats(&cur, T * (c->head_dim / 2));
    w->sin = lf_plan_floats(&cur, T * (c->head_dim / 2));
    w->pooled = lf_plan_floats(&cur, B * C);
    w->rstdf = lf_plan_floats(&cur, B);
    w->lnf = lf_plan_floats(&cur, B * C);
    w->dlnf = lf_plan_floats(&cur, back * B * C);
    w->dpooled = lf_plan_floats(&cur, back * B * C);
    w->mm_scratch = lf_plan_floats(&cur, MATMUL_BLOCK * wide);
    w->att_scratch = lf_plan_floats(&cur, attention_scratch_floats((int)T, omp_get_max_threads()));
    w->dx = lf_plan_floats(&cur, back * T * C);
    w->dln = lf_plan_floats(&cur, back * T * C);
    w->dq = lf_plan_floats(&cur, back * T * QD);
    w->dk = lf_plan_floats(&cur, back * T * KVD);
    w->dv = lf_plan_floats(&cur, back * T * KVD);
    w->datt = lf_plan_floats(&cur, back * T * QD);
    w->dgate = lf_plan_floats(&cur, back * T * I);
    w->dup = lf_plan_floats(&cur, back * T * I);
    w->dact = lf_plan_floats(&cur, back * T * I);
    w->du = lf_plan_floats(&cur, back * T * r);
    w->xd = lf_plan_floats(&cur, T * wide);
    return cur.used / sizeof(float);
}

static size_t decoder_workspace_floats(const lf_model *m, int T, int B, int max_len) {
    (void)max_len;
    dec_work w;
    return carve(&w, m, NULL, (size_t)T, (size_t)B);
}

// The workspace of batch b in m->work (reserved by the model for the batch; same pointers for
// forward and backward).
static void workspace(lf_model *m, const lf_batch *b, dec_work *w) {
    carve(w, m, m->work, (size_t)b->T, (size_t)b->B);
}

// The activations of layer l into *a; with checkpointing the one scratch set, reading xs[l]; in a
// forward alone the one scratch set, reading xs[0] and xs[1] in turn
static dec_acts *layer_acts(dec_acts *a, const lf_model *m, const dec_work *w, int l, size_t T) {
    lf_keep keep = lf_model_keep(m);
    size_t TC = T * m->cfg.hidden_size;
    lf_plan cur =
        lf_plan_start(w->acts + (keep == LF_KEEP_ALL ? (size_t)l * w->acts_stride : 0), LF_CPU_ALIGN);
    carve_acts(a, &cur, m, T, keep == LF_KEEP_ALL);
    if (keep == LF_KEEP_OUTPUTS) a->x = w->xs + (size_t)l * TC;
    if (keep == LF_KEEP_NONE) a->x = w->xs + (size_t)(l % 2) * TC;
    return a;
}

// The residual stream after layer l (the next layer's input: the first buffer of its set)
static float *layer_output(const lf_model *m, const dec_work *w, int l, size_t T) {
    lf_keep keep = lf_model_keep(m);
    size_t TC = T * m->cfg.hidden_size;
    if (keep == LF_KEEP_OUTPUTS) return w->xs + (size_t)(l + 1) * TC;
    if (keep == LF_KEEP_NONE) return w->xs + (size_t)((l + 1) % 2) * TC;
    return l + 1 < m->cfg.num_layers ? w->acts + (size_t)(l + 1) * w->acts_stride : w->xs;
}

static const dec_state *state_of(const lf_model *m) { return m->arch_state; }

// The norm weights (any stored dtype) as f32 in s->norms, converted when the frozen weights changed
static int load_norms(lf_model *m) {
    dec_state *s = m->arch_state;
    if (s->norms_ready && s->norms_version == m->frozen_version) return LF_OK;
    int L = m->cfg.num_layers, C = m->cfg.hidden_size;
    for (int i = 0; i <= 2 * L; i++) {
        const dec_layer *layer = &s->layers[i / 2];
        int index = i == 2 * L ? s->final_norm : i % 2 ? layer->post_attention_norm : layer->input_norm;
        if (m->frozen[index].w.data == NULL)
            return lf_error(LF_EINVAL, "decoder: weight %s is not loaded", m->frozen[index].name);
        weight_to_f32(s->norms + (size_t)i * C, m->frozen[index].w, 0, C);
    }
    s->norms_ready = 1;
    s->norms_version = m->frozen_version;
    return LF_OK;
}

// the projections of layer l, in DEC_* order
static void layer_linears(const lf_model *m, int l, const lf_linear *lin[DEC_NPROJ]) {
    for (int p = 0; p < DEC_NPROJ; p++)
        lin[p] = &m->linears[state_of(m)->layers[l].lin[p]];
}

static const lf_linear *score_linear(const lf_model *m) { return &m->linears[state_of(m)->score]; }

static const float *norm_weight(const lf_model *m, int i) {
    return state_of(m)->norms + (size_t)i * m->cfg.hidden_size;
}

static attention_shape attention_of(lf_model *m, const lf_batch *b, int l) {
    const lf_model_config *c = &m->cfg;
    float p = m->training ? c->attention_dropout : 0.0f;
    int site = dec_attention_site(c->num_layers, l);
    return (attention_shape){b->B,
                             c->num_heads,
                             c->num_kv_heads,
                             c->head_dim,
                             1,
                             c->sliding_window,
                             p,
                             p > 0.0f ? lf_model_dropout_key(m, site) : 0};
}

// ----------------------------------------------------------------------------
// forward

// a->x: (T, C) -> x_out: (T, C)
static void layer_forward(lf_model *m, int l, dec_acts *a, float *x_out, const lf_batch *b, dec_work *w) {
    const lf_model_config *c = &m->cfg;
    int T = b->T, C = c->hidden_size;
    const lf_linear *lin[DEC_NPROJ];
    layer_linears(m, l, lin);
    float *out[DEC_NPROJ] = {a->q, a->k, a->v, a->x_mid, a->gate, a->up, x_out};
    const float *in[DEC_NPROJ] = {a->ln1, a->ln1, a->ln1, a->att, a->ln2, a->ln2, a->act};
    rmsnorm_forward(a->ln1, a->rstd1, a->x, norm_weight(m, 2 * l), T, C, c->norm_eps);
    for (int p = DEC_Q; p <= DEC_V; p++)
        lf_linear_forward(m, lin[p], out[p], a->u[p], w->xd, in[p], T, w->mm_scratch);
    rope_forward(a->q, w->cos, w->sin, T, c->num_heads, c->head_dim);
    rope_forward(a->k, w->cos, w->sin, T, c->num_kv_heads, c->head_dim);
    attention_forward(a->att, a->lse, a->q, a->k, a->v, b->offsets, attention_of(m, b, l), w->att_scratch);
    lf_linear_forward(m, lin[DEC_O], a->x_mid, a->u[DEC_O], w->xd, a->att, T, w->mm_scratch);
    // x_mid = attention output + x, ln2 = post_attention_layernorm(x_mid)
    residual_rmsnorm_forward(a->x_mid, a->ln2, a->rstd2, a->x_mid, a->x, norm_weight(m, 2 * l + 1), T, C,
                             c->norm_eps);
    for (int p = DEC_GATE; p <= DEC_UP; p++)
        lf_linear_forward(m, lin[p], out[p], a->u[p], w->xd, in[p], T, w->mm_scratch);
    silu_mul_forward(a->act, a->gate, a->up, (long)T * c->intermediate_size);
    lf_linear_forward(m, lin[DEC_DOWN], x_out, a->u[DEC_DOWN], w->xd, a->act, T, w->mm_scratch);
    residual_forward(x_out, x_out, a->x_mid, (int64_t)T * C);
}

// x: (T, C) final residual stream -> logits: (B, num_labels)
static void head_forward(lf_model *m, const lf_batch *b, dec_work *w, const float *x, float *logits) {
    const lf_model_config *c = &m->cfg;
    gather_rows_forward(w->pooled, x, b->pool_index, b->B, c->hidden_size);
    rmsnorm_forward(w->lnf, w->rstdf, w->pooled, norm_weight(m, 2 * c->num_layers), b->B, c->hidden_size,
                    c->norm_eps);
    lf_linear_forward(m, score_linear(m), logits, NULL, w->xd, w->lnf, b->B, w->mm_scratch);
}

static int decoder_forward(lf_model *m, const lf_batch *b, float *logits) {
    const lf_model_config *c = &m->cfg;
    int rc = load_norms(m);
    if (rc != LF_OK) return rc;
    dec_work w;
    workspace(m, b, &w);
    rope_tables(w.cos, w.sin, b->positions, b->T, c->head_dim, c->rope_theta);
    dec_acts a;
    embedding_forward(layer_acts(&a, m, &w, 0, b->T)->x, b->tokens, m->frozen[state_of(m)->embed].w, b->T,
                      c->hidden_size, 0);
    for (int l = 0; l < c->num_layers; l++)
        layer_forward(m, l, layer_acts(&a, m, &w, l, b->T), layer_output(m, &w, l, b->T), b, &w);
    head_forward(m, b, &w, layer_output(m, &w, c->num_layers - 1, b->T), logits);
    return LF_OK;
}

// ----------------------------------------------------------------------------
// backward

static void zero(float *x, size_t n) { memset(x, 0, n * sizeof(float)); }

// w->dx: (T, C) holds d(layer output) on entry and d(layer input) on return (when need_dx: a
// trainable layer lies below)
static void layer_backward(lf_model *m, int l, const dec_acts *a, const lf_batch *b, dec_work *w,
                           int need_dx) {
    const lf_model_config *c = &m->cfg;
    size_t T = b->T, C = c->hidden_size, I = c->intermediate_size;
    const lf_linear *lin[DEC_NPROJ];
    layer_linears(m, l, lin);
    float *sc = w->mm_scratch;
    lf_linear_backward(m, lin[DEC_DOWN], w->dact, 0, w->du, w->xd, w->dx, a->act, a->u[DEC_DOWN], (int)T, sc);
    zero(w->dgate, T * I);
    zero(w->dup, T * I);
    silu_mul_backward(w->dgate, w->dup, w->dact, a->gate, a->up, (long)(T * I));
    lf_linear_backward(m, lin[DEC_GATE], w->dln, 0, w->du, w->xd, w->dgate, a->ln2, a->u[DEC_GATE], (int)T,
                       sc);
    lf_linear_backward(m, lin[DEC_UP], w->dln, 1, w->du, w->xd, w->dup, a->ln2, a->u[DEC_UP], (int)T, sc);
    rmsnorm_backward(w->dx, NULL, w->dln, a->x_mid, norm_weight(m, 2 * l + 1), a->rstd2, (int)T, (int)C);
    lf_linear_backward(m, lin[DEC_O], w->datt, 0, w->du, w->xd, w->dx, a->att, a->u[DEC_O], (int)T, sc);
    attention_backward(w->dq, w->dk, w->dv, 0, w->datt, a->att, a->lse, a->q, a->k, a->v, b->offsets,
                       attention_of(m, b, l), w->att_scratch);
    rope_backward(w->dq, w->cos, w->sin, (int)T, c->num_heads, c->head_dim);
    rope_backward(w->dk, w->cos, w->sin, (int)T, c->num_kv_heads, c->head_dim);
    float *dln = need_dx ? w->dln : NULL;
    const float *dproj[3] = {w->dq, w->dk, w->dv};
    for (int p = DEC_Q; p <= DEC_V; p++) // the first writes dln, the others add
        lf_linear_backward(m, lin[p], dln, p != DEC_Q, w->du, w->xd, dproj[p], a->ln1, a->u[p], (int)T, sc);
    if (need_dx) rmsnorm_backward(w->dx, NULL, w->dln, a->x, norm_weight(m, 2 * l), a->rstd1, (int)T, (int)C);
}

// dlogits: (B, num_labels) -> w->dx: (T, C), non-zero at the pooled tokens
static void head_backward(lf_model *m, const lf_batch *b, dec_work *w, const float *dlogits) {
    const lf_model_config *c = &m->cfg;
    size_t C = c->hidden_size;
    lf_linear_backward(m, score_linear(m), w->dlnf, 0, w->du, w->xd, dlogits, w->lnf, NULL, b->B,
                       w->mm_scratch);
    zero(w->dpooled, b->B * C);
    rmsnorm_backward(w->dpooled, NULL, w->dlnf, w->pooled, norm_weight(m, 2 * c->num_layers), w->rstdf, b->B,
                     (int)C);
    zero(w->dx, b->T * C);
    gather_rows_backward(w->dx, w->dpooled, b->pool_index, b->B, (int)C);
}

static int decoder_backward(lf_model *m, const lf_batch *b, const float *dlogits) {
    dec_work w;
    workspace(m, b, &w);
    head_backward(m, b, &w, dlogits);
    int lowest = lf_model_lowest_lora_layer(m); // frozen layers below it need no backward
    for (int l = m->cfg.num_layers - 1; l >= lowest; l--) {
        dec_acts store, *a = layer_acts(&store, m, &w, l, b->T);
        if (m->gradient_checkpointing) layer_forward(m, l, a, layer_output(m, &w, l, b->T), b, &w);
        layer_backward(m, l, a, b, &w, l > lowest);
    }
    return LF_OK;
}

const lf_arch lf_arch_decoder = {
    .name = "decoder",
    .build = decoder_build,
    .workspace_floats = decoder_workspace_floats,
    .forward = decoder_forward,
    .backward = decoder_backward,
    .lora_targets = proj_names,
    .n_lora_targets = DEC_NPROJ,
};
