// Llama and Mistral sequence classifiers on the device: the CUDA twin of csrc/models/decoder.c, op
// for op, with the same tables (m->arch_state is the host's dec_state, models/decoder.h) and the
// same dropout streams (attention probabilities, LoRA inputs), so the GPU computes what the CPU
// computes. Composes launchers; no arithmetic here.
//
// Activations are of dm->dtype; the RMSNorm weights are f32 (the runtime uploads 1-D frozen tensors
// so), the RoPE tables, norm statistics and LoRA intermediates f32. The final RMSNorm and the
// trained score head run in f32 on the pooled rows (each sequence's last non-pad token), as on the
// CPU, and give the f32 logits. With gradient checkpointing only each layer's input is kept and
// backward recomputes the layer. Backward stops below the lowest layer holding LoRA (nothing
// under it is trained), which changes no gradient.
#include "attention.cuh"
#include "convert.cuh"
#include "device_model.cuh"
#include "embedding.cuh"
#include "linear.cuh"
#include "residual.cuh"
#include "rmsnorm.cuh"
#include "rope.cuh"
#include "silu_mul.cuh"

extern "C" {
#include "models/decoder.h"
}

static const dec_state *state_of(const lf_model_desc *m) { return (const dec_state *)m->arch_state; }

static const float *norm_weight(const lf_cuda_model *dm, int frozen) {
    return (const float *)dm->frozen[frozen];
}

static const lf_linear *projection(const lf_model_desc *m, int l, int p) {
    return &m->linears[state_of(m)->layers[l].lin[p]];
}

// rc; when it is an error, the message names the step and its layer (l < 0: outside the layers)
static int step(int rc, const char *what, int l) {
    if (rc == 0) return 0;
    const char *why = cudaGetErrorString((cudaError_t)rc);
    if (l < 0) return lf_cuda_set_error(rc, "%s: %s (code %d)", what, why, rc);
    return lf_cuda_set_error(rc, "layer %d, %s: %s (code %d)", l, what, why, rc);
}

// ----------------------------------------------------------------------------- activations

typedef struct { // bytes of T tokens' (T, C), (T, NH*D), (T, KV*D), (T, I) of the dtype
    size_t TC, TQ, TKV, TI;
} token_bytes;

static token_bytes bytes_of(const lf_cuda_model *dm, int T) {
    const lf_model_config *c = &dm->host->cfg;
    size_t tE = (size_t)T * lf_cuda_dtype_size(dm->dtype);
    return {tE * c->hidden_size, tE * c->num_heads * c->head_dim, tE * c->num_kv_heads * c->head_dim,
            tE * c->intermediate_size};
}

typedef struct {           // one layer's activations: of the dtype, statistics and LoRA's u f32
    void *x;               // (T, C) the layer's input (the residual stream)
    void *ln1, *mid, *ln2; // (T, C) input norm, residual stream after attention, its norm
    void *q, *att;         // (T, NH*D) (q after RoPE)
    void *k, *v;           // (T, KV*D) (k after RoPE)
    int64_t ld;            // q, k, v: columns of one (T, (NH + 2 KV) D) matrix when > 0 (linears_layout)
    void *gate, *up, *act; // (T, I)
    int64_t ld_mlp;        // gate, up: columns of one (T, 2I) matrix when > 0 (linears_layout)
    float *rstd1, *rstd2;  // (T,)
    float *lse;            // (T, NH)
    float *u[DEC_NPROJ];   // (T, r)
} layer_acts;

typedef struct {
    char *layers; // num_layers blocks of layer_bytes (1 when checkpointing)
    size_t layer_bytes;
    void *xs;                                 // (L + 1, T, C) layer inputs with checkpointing; else the
                                              // last layer's output (T, C)
    float *cos, *sin;                         // (T, D/2)
    void *pooled, *dpooled;                   // (B, C) of the dtype
    float *pooled32, *lnf, *dlnf, *dpooled32; // (B, C) f32: the head's input, normed, their gradients
    float *rstdf;                             // (B,)
    void *dx, *dln;                           // backward (T, C)
    void *dqkv, *datt; // backward (T, (NH + 2 KV) D): dq, dk, dv laid out as the layer's q, k, v; (T, NH*D)
    void *dgate_up, *dact; // backward (T, 2I): dgate, dup laid out as the layer's gate, up; (T, I)
    void *lora_scratch, *att_scratch;
} decoder_work;

static int lora_rank(const lf_model_desc *m) { return m->lora.r > 0 ? m->lora.r : 1; }

// lays one layer's activations out from base (NULL: counts); with_x: the block holds the input too
static size_t layer_block(const lf_cuda_model *dm, char *base, int T, int with_x, layer_acts *a) {
    const lf_model_desc *m = dm->host;
    token_bytes n = bytes_of(dm, T);
    size_t t32 = (size_t)T * sizeof(float);
    lf_plan c = cuda_plan(base);
    a->x = with_x ? lf_plan_take(&c, n.TC) : NULL;
    void **tc[] = {&a->ln1, &a->mid, &a->ln2};
    for (void **p : tc)
        *p = lf_plan_take(&c, n.TC);
    a->q = lf_plan_take(&c, n.TQ + 2 * n.TKV);
    a->k = a->v = NULL, a->ld = 0; // layer_at lays q, k, v out
    a->att = lf_plan_take(&c, n.TQ);
    a->gate = lf_plan_take(&c, 2 * n.TI);
    a->up = NULL, a->ld_mlp = 0; // layer_at lays gate, up out
    a->act = lf_plan_take(&c, n.TI);
    a->rstd1 = (float *)lf_plan_take(&c, t32);
    a->rstd2 = (float *)lf_plan_take(&c, t32);
    a->lse = (float *)lf_plan_take(&c, t32 * m->cfg.num_heads);
    for (int p = 0; p < DEC_NPROJ; p++)
        a->u[p] = (float *)lf_plan_take(&c, t32 * lora_rank(m));
    return c.used;
}

static size_t decoder_layout(const lf_cuda_model *dm, char *base, const lf_batch *b, decoder_work *w) {
    const lf_model_desc *m = dm->host;
    const lf_model_config *c = &m->cfg;
    int T = b->T, L = c->num_layers, ckpt = m->gradient_checkpointing;
    token_bytes n = bytes_of(dm, T);
    size_t BC = (size_t)b->B * c->hidden_size, E = lf_cuda_dtype_size(dm->dtype);
    lf_plan cur = cuda_plan(base);
    layer_acts unused;
    w->layer_bytes = layer_block(dm, NULL, T, !ckpt, &unused);
    w->layers = (char *)lf_plan_take(&cur, w->layer_bytes * (size_t)(ckpt ? 1 : L));
    w->xs = lf_plan_take(&cur, (size_t)(ckpt ? L + 1 : 1) * n.TC);
    w->cos = (float *)lf_plan_take(&cur, (size_t)T * (c->head_dim / 2) * sizeof(float));
    w->sin = (float *)lf_plan_take(&cur, (size_t)T * (c->head_dim / 2) * sizeof(float));
    w->pooled = lf_plan_take(&cur, BC * E);
    w->dpooled = lf_plan_take(&cur, BC * E);
    float **bc[] = {&w->pooled32, &w->lnf, &w->dlnf, &w->dpooled32};
    for (float **p : bc)
        *p = (float *)lf_plan_take(&cur, BC * sizeof(float));
    w->rstdf = (float *)lf_plan_take(&cur, (size_t)b->B * sizeof(float));
    w->dx = lf_plan_take(&cur, n.TC);
    w->dln = lf_plan_take(&cur, n.TC);
    w->dqkv = lf_plan_take(&cur, n.TQ + 2 * n.TKV);
    w->datt = lf_plan_take(&cur, n.TQ);
    w->dgate_up = lf_plan_take(&cur, 2 * n.TI);
    w->dact = lf_plan_take(&cur, n.TI);
    w->lora_scratch = lf_plan_take(&cur, linears_lora_scratch_bytes(m, T));
    w->att_scratch =
        lf_plan_take(&cur, attention_scratch_bytes(T, c->num_heads, c->num_kv_heads, c->head_dim));
    return cur.used;
}

static size_t decoder_workspace_bytes(const lf_cuda_model *dm, const lf_batch *b) {
    decoder_work w;
    return decoder_layout(dm, NULL, b, &w);
}

// the residual stream entering layer l; l == num_layers: the last layer's output (the head's input)
static void *layer_input(const lf_cuda_model *dm, const decoder_work *w, int l, int T) {
    const lf_model_desc *m = dm->host;
    if (m->gradient_checkpointing) return (char *)w->xs + (size_t)l * bytes_of(dm, T).TC;
    if (l == m->cfg.num_layers) return w->xs;
    layer_acts a;
    layer_block(dm, w->layers + w->layer_bytes * (size_t)l, T, 1, &a);
    return a.x;
}

// the activations of layer l; when checkpointing, the one shared set with the input in xs[l]
static layer_acts layer_at(const lf_cuda_model *dm, const decoder_work *w, int l, int T) {
    layer_acts a;
    int ckpt = dm->host->gradient_checkpointing;
    layer_block(dm, w->layers + w->layer_bytes * (size_t)(ckpt ? 0 : l), T, !ckpt, &a);
    if (ckpt) a.x = layer_input(dm, w, l, T);
    const lf_linear *qkv[] = {projection(dm->host, l, DEC_Q), projection(dm->host, l, DEC_K),
                              projection(dm->host, l, DEC_V)};
    void *out[3];
    a.ld = linears_layout(dm, qkv, 3, a.q, T, out);
    a.q = out[0], a.k = out[1], a.v = out[2];
    const lf_linear *gate_up[] = {projection(dm->host, l, DEC_GATE), projection(dm->host, l, DEC_UP)};
    a.ld_mlp = linears_layout(dm, gate_up, 2, a.gate, T, out);
    a.gate = out[0], a.up = out[1];
    return a;
}

// ----------------------------------------------------------------------------- forward

// causal GQA attention, Mistral's sliding window, probability dropout when training (layer l's stream
// goes to the launchers apart: attention_key)
static attention_shape attention_of(const lf_model_desc *m, const lf_batch *b) {
    const lf_model_config *c = &m->cfg;
    float p = m->training ? c->attention_dropout : 0.0f;
    attention_shape s = {};
    s.B = b->B;
    s.NH = c->num_heads;
    s.NKV = c->num_kv_heads;
    s.HD = c->head_dim;
    s.causal = 1;
    s.window = c->sliding_window;
    s.dropout = p;
    return s;
}

static lf_cuda_key attention_key(const lf_cuda_model *dm, int l) {
    return lf_cuda_dropout_key(dm, dec_attention_site(dm->host->cfg.num_layers, l));
}

// layer l's input norm: a->x -> a->ln1, a->rstd1 (layer 0's, and every layer's when recomputed; the
// forward computes the others with the previous layer's mlp residual)
static int input_norm_forward(lf_cuda_model *dm, const layer_acts *a, int T, int l) {
    const lf_model_config *c = &dm->host->cfg;
    const float *weight = norm_weight(dm, state_of(dm->host)->layers[l].input_norm);
    return step(rmsnorm_forward_cuda(a->ln1, a->rstd1, a->x, weight, T, c->hidden_size, c->norm_eps,
                                     dm->dtype, dm->stream),
                "input_layernorm", l);
}

// x_out += a->mid, the mlp residual of layer l; with next_norm, also layer l + 1's input norm of it
// (x_out is that layer's input) in the same launch. With checkpointing layer l + 1's ln1 and rstd1
// are a's, which layer l no longer reads.
static int mlp_residual_forward(lf_cuda_model *dm, const decoder_work *w, const layer_acts *a, void *x_out,
                                int T, int l, int next_norm) {
    const lf_model_desc *m = dm->host;
    int C = m->cfg.hidden_size;
    if (!next_norm)
        return step(residual_forward_cuda(x_out, x_out, a->mid, (int64_t)T * C, dm->dtype, dm->stream),
                    "mlp residual", l);
    layer_acts next = layer_at(dm, w, l + 1, T);
    const float *weight = norm_weight(dm, state_of(m)->layers[l + 1].input_norm);
    return step(residual_rmsnorm_forward_cuda(x_out, next.ln1, next.rstd1, x_out, a->mid, weight, T, C,
                                              m->cfg.norm_eps, dm->dtype, dm->stream),
                "mlp residual and the next input_layernorm", l);
}

// a->x: (T, C) -> x_out: (T, C); a->ln1 and a->rstd1 hold the input norm on entry; next_norm: see
// mlp_residual_forward
static int layer_forward(lf_cuda_model *dm, const decoder_work *w, const layer_acts *a, void *x_out,
                         const lf_batch *b, int l, int next_norm) {
    const lf_model_desc *m = dm->host;
    const lf_model_config *c = &m->cfg;
    const dec_layer *L = &state_of(m)->layers[l];
    const char *const *name = m->lora_targets;
    int T = b->T, C = c->hidden_size, D = c->head_dim;
    lf_dtype dt = dm->dtype;
    cudaStream_t st = dm->stream;
    void *out[DEC_NPROJ] = {a->q, a->k, a->v, a->mid, a->gate, a->up, x_out};
    const lf_linear *qkv[] = {projection(m, l, DEC_Q), projection(m, l, DEC_K), projection(m, l, DEC_V)};
    if (int rc =
            step(linears_forward(dm, qkv, 3, out + DEC_Q, a->ld, a->u + DEC_Q, a->ln1, T, dt), "q, k, v", l))
        return rc;
    const int64_t ldq = a->ld > 0 ? a->ld : (int64_t)c->num_heads * D,
                  ldkv = a->ld > 0 ? a->ld : (int64_t)c->num_kv_heads * D;
    if (int rc = step(rope_qk_forward_cuda(a->q, a->k, ldq, ldkv, w->cos, w->sin, T, c->num_heads,
                                           c->num_kv_heads, D, dt, st),
                      "rope q and k", l))
        return rc;
    if (int rc = step(attention_forward_cuda(a->att, a->lse, a->q, a->k, a->v, ldq, ldkv, dm->batch.offsets,
                                             T, b->max_len, attention_of(m, b), attention_key(dm, l), dt, st),
                      "attention", l))
        return rc;
    if (int rc = step(linear_forward(dm, projection(m, l, DEC_O), a->mid, a->u[DEC_O], a->att, T, dt),
                      name[DEC_O], l))
        return rc;
    if (int rc = step(residual_rmsnorm_forward_cuda(a->mid, a->ln2, a->rstd2, a->mid, a->x,
                                                    norm_weight(dm, L->post_attention_norm), T, C,
                                                    c->norm_eps, dt, st),
                      "attention residual and post_attention_layernorm", l))
        return rc;
    const lf_linear *gate_up[] = {projection(m, l, DEC_GATE), projection(m, l, DEC_UP)};
    if (int rc =
            step(linears_forward(dm, gate_up, 2, out + DEC_GATE, a->ld_mlp, a->u + DEC_GATE, a->ln2, T, dt),
                 "gate, up", l))
        return rc;
    if (int rc = step(silu_mul_forward_cuda(a->act, a->gate, a->up, T, c->intermediate_size,
                                            a->ld_mlp > 0 ? a->ld_mlp : c->intermediate_size, dt, st),
                      "silu_mul", l))
        return rc;
    if (int rc = step(linear_forward(dm, projection(m, l, DEC_DOWN), x_out, a->u[DEC_DOWN], a->act, T, dt),
                      name[DEC_DOWN], l))
        return rc;
    return mlp_residual_forward(dm, w, a, x_out, T, l, next_norm);
}

// x: (T, C) the last layer's output -> dm->logits: (B, NL) f32; the final norm and score in f32
static int head_forward(lf_cuda_model *dm, const lf_batch *b, const void *x, decoder_work *w) {
    const lf_model_desc *m = dm->host;
    const dec_state *s = state_of(m);
    int B = b->B, C = m->cfg.hidden_size;
    if (int rc =
            step(gather_rows_forward_cuda(w->pooled, x, dm->batch.pool_index, B, C, dm->dtype, dm->stream),
                 "pooling", -1))
        return rc;
    if (int rc = step(convert_cuda(w->pooled32, LF_F32, w->pooled, dm->dtype, (int64_t)B * C, dm->stream),
                      "pooled rows to f32", -1))
        return rc;
    if (int rc = step(rmsnorm_forward_cuda(w->lnf, w->rstdf, w->pooled32, norm_weight(dm, s->final_norm), B,
                                           C, m->cfg.norm_eps, LF_F32, dm->stream),
                      "model.norm", -1))
        return rc;
    return step(linear_forward(dm, &m->linears[s->score], dm->logits, NULL, w->lnf, B, LF_F32), "score", -1);
}

static int decoder_forward(lf_cuda_model *dm, const lf_batch *b) {
    const lf_model_desc *m = dm->host;
    const lf_model_config *c = &m->cfg;
    const dec_state *s = state_of(m);
    const lf_frozen *embed = &m->frozen[s->embed];
    int T = b->T;
    decoder_work w;
    decoder_layout(dm, (char *)dm->work, b, &w);
    if (int rc = step(
            rope_tables_cuda(w.cos, w.sin, dm->batch.positions, T, c->head_dim, c->rope_theta, dm->stream),
            "rope tables", -1))
        return rc;
    if (int rc =
            step(embedding_forward_cuda(layer_input(dm, &w, 0, T), dm->batch.tokens, dm->frozen[s->embed],
                                        dm->frozen_dtype[s->embed], (int)embed->shape[0], T,
                                        (int)embed->shape[1], 0, dm->dtype, dm->stream),
                 "embed_tokens", -1))
        return rc;
    for (int l = 0; l < c->num_layers; l++) { // each layer's last residual brings the next one's input norm
        layer_acts a = layer_at(dm, &w, l, T);
        if (l == 0) {
            if (int rc = input_norm_forward(dm, &a, T, 0)) return rc;
        }
        if (int rc = layer_forward(dm, &w, &a, layer_input(dm, &w, l + 1, T), b, l, l + 1 < c->num_layers))
            return rc;
    }
    return head_forward(dm, b, layer_input(dm, &w, c->num_layers, T), &w);
}

// ----------------------------------------------------------------------------- backward

static int zero(lf_cuda_model *dm, void *x, size_t bytes) {
    return (int)cudaMemsetAsync(x, 0, bytes, dm->stream);
}

// w->dx: (T, C) holds d(layer output) on entry and d(layer input) on return (when need_dx)
static int layer_backward(lf_cuda_model *dm, decoder_work *w, const layer_acts *a, const lf_batch *b, int l,
                          int need_dx) {
    const lf_model_desc *m = dm->host;
    const lf_model_config *c = &m->cfg;
    const dec_layer *L = &state_of(m)->layers[l];
    const char *const *name = m->lora_targets;
    int T = b->T, C = c->hidden_size, D = c->head_dim;
    lf_dtype dt = dm->dtype;
    cudaStream_t st = dm->stream;
    void *sc = w->lora_scratch;
    if (int rc = step(linear_backward(dm, projection(m, l, DEC_DOWN), w->dact, DX_WRITE, sc, w->dx, a->act,
                                      a->u[DEC_DOWN], T, dt),
                      name[DEC_DOWN], l))
        return rc;
    const lf_linear *gate_up[] = {projection(m, l, DEC_GATE), projection(m, l, DEC_UP)};
    void *dgate_up[2];
    linears_layout(dm, gate_up, 2, w->dgate_up, T, dgate_up);
    if (int rc = step(silu_mul_backward_cuda(dgate_up[0], dgate_up[1], w->dact, a->gate, a->up, T,
                                             c->intermediate_size,
                                             a->ld_mlp > 0 ? a->ld_mlp : c->intermediate_size, 0, dt, st),
                      "silu_mul backward", l))
        return rc;
    if (int rc = step(linears_backward(dm, gate_up, 2, w->dln, DX_WRITE, sc, dgate_up, a->ld_mlp, a->ln2,
                                       a->u + DEC_GATE, T, dt),
                      "gate, up backward", l))
        return rc;
    if (int rc = step(rmsnorm_backward_cuda(w->dx, NULL, w->dln, a->mid,
                                            norm_weight(dm, L->post_attention_norm), a->rstd2, T, C, dt, st),
                      "post_attention_layernorm backward", l))
        return rc;
    if (int rc = step(linear_backward(dm, projection(m, l, DEC_O), w->datt, DX_WRITE, sc, w->dx, a->att,
                                      a->u[DEC_O], T, dt),
                      name[DEC_O], l))
        return rc;
    const lf_linear *qkv[] = {projection(m, l, DEC_Q), projection(m, l, DEC_K), projection(m, l, DEC_V)};
    void *dproj[3];
    linears_layout(dm, qkv, 3, w->dqkv, T, dproj);
    const int64_t ldq = a->ld > 0 ? a->ld : (int64_t)c->num_heads * D,
                  ldkv = a->ld > 0 ? a->ld : (int64_t)c->num_kv_heads * D;
    if (int rc =
            step(attention_backward_cuda(dproj[0], dproj[1], dproj[2], 0, w->datt, a->att, a->lse, a->q, a->k,
                                         a->v, ldq, ldkv, dm->batch.offsets, T, b->max_len,
                                         attention_of(m, b), attention_key(dm, l), w->att_scratch, dt, st),
                 "attention backward", l))
        return rc;
    if (int rc = step(rope_qk_backward_cuda(dproj[0], dproj[1], ldq, ldkv, w->cos, w->sin, T, c->num_heads,
                                            c->num_kv_heads, D, dt, st),
                      "rope q and k backward", l))
        return rc;
    void *dln = need_dx ? w->dln : NULL;
    if (int rc =
            step(linears_backward(dm, qkv, 3, dln, DX_WRITE, sc, dproj, a->ld, a->ln1, a->u + DEC_Q, T, dt),
                 "q, k, v backward", l))
        return rc;
    if (!need_dx) return 0;
    return step(rmsnorm_backward_cuda(w->dx, NULL, w->dln, a->x, norm_weight(dm, L->input_norm), a->rstd1, T,
                                      C, dt, st),
                "input_layernorm backward", l);
}

// dm->dlogits: (B, NL) f32 -> the score's gradient +=; when need_dx, w->dx: (T, C) = the gradient of the
// last layer's output, non-zero at the pooled tokens
static int head_backward(lf_cuda_model *dm, const lf_batch *b, decoder_work *w, int need_dx) {
    const lf_model_desc *m = dm->host;
    const dec_state *s = state_of(m);
    int B = b->B, C = m->cfg.hidden_size;
    size_t BC = (size_t)B * C;
    if (int rc = step(linear_backward(dm, &m->linears[s->score], need_dx ? w->dlnf : NULL, DX_WRITE, NULL,
                                      dm->dlogits, w->lnf, NULL, B, LF_F32),
                      "score backward", -1))
        return rc;
    if (!need_dx) return 0;
    if (int rc = step(zero(dm, w->dpooled32, BC * sizeof(float)), "zeroing d pooled", -1)) return rc;
    if (int rc =
            step(rmsnorm_backward_cuda(w->dpooled32, NULL, w->dlnf, w->pooled32,
                                       norm_weight(dm, s->final_norm), w->rstdf, B, C, LF_F32, dm->stream),
                 "model.norm backward", -1))
        return rc;
    if (int rc = step(convert_cuda(w->dpooled, dm->dtype, w->dpooled32, LF_F32, (int64_t)BC, dm->stream),
                      "d pooled to the dtype", -1))
        return rc;
    if (int rc = step(zero(dm, w->dx, bytes_of(dm, b->T).TC), "zeroing d x", -1)) return rc;
    return step(
        gather_rows_backward_cuda(w->dx, w->dpooled, dm->batch.pool_index, B, C, dm->dtype, dm->stream),
        "pooling backward", -1);
}

static int decoder_backward(lf_cuda_model *dm, const lf_batch *b) {
    const lf_model_desc *m = dm->host;
    int T = b->T, L = m->cfg.num_layers;
    decoder_work w;
    decoder_layout(dm, (char *)dm->work, b, &w);
    int lowest = lf_lowest_lora_layer(m->linears, m->n_linears, m->cfg.num_layers);
    if (int rc = head_backward(dm, b, &w, lowest < L)) return rc;
    // the attention backward takes its dq sums zeroed and leaves them so: once per step
    const lf_model_config *c = &m->cfg;
    if (int rc = step(
            zero(dm, w.att_scratch, attention_scratch_bytes(T, c->num_heads, c->num_kv_heads, c->head_dim)),
            "zeroing the attention scratch", -1))
        return rc;
    for (int l = L - 1; l >= lowest; l--) {
        layer_acts a = layer_at(dm, &w, l, T);
        if (m->gradient_checkpointing) { // layer l again from its input, leaving layer l + 1's norm alone
            if (int rc = input_norm_forward(dm, &a, T, l)) return rc;
            if (int rc = layer_forward(dm, &w, &a, layer_input(dm, &w, l + 1, T), b, l, 0)) return rc;
        }
        if (int rc = layer_backward(dm, &w, &a, b, l, l > lowest)) return rc;
    }
    return 0;
}

// every layer's q, k, v weights side by side, and gate, up (and their biases when all have one)
static void decoder_frozen_chains(const lf_model_desc *m, int *next) {
    for (int l = 0; l < m->cfg.num_layers; l++) {
        const lf_linear *qkv[] = {projection(m, l, DEC_Q), projection(m, l, DEC_K), projection(m, l, DEC_V)};
        linears_side_by_side(qkv, 3, next);
        const lf_linear *gate_up[] = {projection(m, l, DEC_GATE), projection(m, l, DEC_UP)};
        linears_side_by_side(gate_up, 2, next);
    }
}

const lf_cuda_arch lf_cuda_arch_decoder = {"decoder", decoder_workspace_bytes, decoder_forward,
                                           decoder_backward, decoder_frozen_chains};
