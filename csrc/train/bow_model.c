#include "train/bow_model.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"

typedef struct {
    lf_trainable t;
    lf_trainable_param params[3];
    int V, D, K;
    float *arena; // values then grads of E, W, b
    int B, cap_tokens, cap_rows;
    int32_t *tokens;  // (T,) packed batch
    int32_t *offsets; // (B+1,)
    int32_t *labels;  // (B,), valid when has_labels
    int has_labels;
    float *pooled;  // (B, D) mean embeddings
    float *dlogits; // (B, K)
} bow_model;

static int grow(bow_model *m, int tokens, int rows) {
    if (tokens > m->cap_tokens) {
        int32_t *t = realloc(m->tokens, sizeof(int32_t) * tokens);
        if (!t) return lf_error(LF_ENOMEM, "bow model: out of memory for %d tokens", tokens);
        m->tokens = t;
        m->cap_tokens = tokens;
    }
    if (rows > m->cap_rows) {
        int32_t *o = realloc(m->offsets, sizeof(int32_t) * (rows + 1));
        if (o) m->offsets = o;
        int32_t *l = realloc(m->labels, sizeof(int32_t) * rows);
        if (l) m->labels = l;
        float *p = realloc(m->pooled, sizeof(float) * rows * m->D);
        if (p) m->pooled = p;
        float *d = realloc(m->dlogits, sizeof(float) * rows * m->K);
        if (d) m->dlogits = d;
        if (!o || !l || !p || !d) return lf_error(LF_ENOMEM, "bow model: out of memory for %d rows", rows);
        m->cap_rows = rows;
    }
    return LF_OK;
}

static int bow_load_batch(void *self, const int64_t *ids, const int64_t *mask, const int64_t *labels, int B,
                          int L) {
    bow_model *m = self;
    int rc = grow(m, B * L, B);
    if (rc != LF_OK) return rc;
    int T = 0;
    for (int b = 0; b < B; b++) {
        m->offsets[b] = T;
        for (int l = 0; l < L; l++) {
            if (!mask[b * L + l]) continue;
            int64_t id = ids[b * L + l];
            if (id < 0 || id >= m->V)
                return lf_error(LF_EINVAL, "input_ids[%d][%d] = %lld is outside the vocabulary [0, %d)", b, l,
                                (long long)id, m->V);
            m->tokens[T++] = (int32_t)id;
        }
        if (T == m->offsets[b]) return lf_error(LF_EINVAL, "attention_mask row %d has no token", b);
        if (labels && (labels[b] < 0 || labels[b] >= m->K))
            return lf_error(LF_EINVAL, "labels[%d] = %lld is outside [0, %d)", b, (long long)labels[b], m->K);
        if (labels) m->labels[b] = (int32_t)labels[b];
    }
    m->offsets[B] = T;
    m->B = B;
    m->has_labels = labels != NULL;
    return LF_OK;
}

// pooled: (B, D) mean of the embeddings of each sequence; logits: (B, K) = pooled W^T + b
static void bow_logits(bow_model *m, float *logits) {
    const float *E = m->params[0].data, *W = m->params[1].data, *bias = m->params[2].data;
    for (int b = 0; b < m->B; b++) {
        float *h = m->pooled + (int64_t)b * m->D;
        memset(h, 0, sizeof(float) * m->D);
        int start = m->offsets[b], len = m->offsets[b + 1] - start;
        for (int t = start; t < start + len; t++)
            for (int d = 0; d < m->D; d++)
                h[d] += E[(int64_t)m->tokens[t] * m->D + d];
        for (int d = 0; d < m->D; d++)
            h[d] /= (float)len;
        for (int k = 0; k < m->K; k++) {
            float acc = bias[k];
            for (int d = 0; d < m->D; d++)
                acc += h[d] * W[(int64_t)k * m->D + d];
            logits[b * m->K + k] = acc;
        }
    }
}

// the class-weighted mean of -log softmax(logits)[label]; dlogits: (B, K) its gradient, or NULL
static float bow_loss(bow_model *m, const float *weights, const float *logits, float *dlogits) {
    double total = 0.0, wsum = 0.0;
    for (int b = 0; b < m->B; b++)
        wsum += weights ? weights[m->labels[b]] : 1.0f;
    for (int b = 0; b < m->B; b++) {
        const float *z = logits + b * m->K;
        float mx = z[0];
        for (int k = 1; k < m->K; k++)
            mx = z[k] > mx ? z[k] : mx;
        double s = 0.0;
        for (int k = 0; k < m->K; k++)
            s += exp((double)(z[k] - mx));
        int y = m->labels[b];
        double w = weights ? weights[y] : 1.0;
        total += w * (log(s) - (double)(z[y] - mx));
        if (!dlogits) continue;
        for (int k = 0; k < m->K; k++)
            dlogits[b * m->K + k] = (float)(w / wsum * (exp((double)(z[k] - mx)) / s - (k == y)));
    }
    return (float)(total / wsum);
}

static int bow_forward(void *self, const float *weights, float *logits, float *loss) {
    bow_model *m = self;
    bow_logits(m, logits);
    if (loss) {
        if (!m->has_labels) return lf_error(LF_EINVAL, "a loss needs labels");
        *loss = bow_loss(m, weights, logits, NULL);
    }
    return LF_OK;
}

static int bow_forward_backward(void *self, const float *weights, lf_logits_loss_fn loss_fn, void *loss_ctx,
                                float *logits, float *loss) {
    bow_model *m = self;
    if (!m->has_labels) return lf_error(LF_EINVAL, "training needs labels");
    bow_logits(m, logits);
    int rc = LF_OK;
    if (loss_fn == NULL)
        *loss = bow_loss(m, weights, logits, m->dlogits);
    else if ((rc = loss_fn(loss_ctx, logits, m->dlogits, loss)) != LF_OK)
        return rc;
    const float *W = m->params[1].data;
    float *dE = m->params[0].grad, *dW = m->params[1].grad, *db = m->params[2].grad;
    for (int b = 0; b < m->B; b++) {
        const float *g = m->dlogits + b * m->K, *h = m->pooled + (int64_t)b * m->D;
        int start = m->offsets[b], len = m->offsets[b + 1] - start;
        for (int k = 0; k < m->K; k++) {
            db[k] += g[k];
            for (int d = 0; d < m->D; d++)
                dW[(int64_t)k * m->D + d] += g[k] * h[d];
        }
        for (int d = 0; d < m->D; d++) {
            float dh = 0.0f;
            for (int k = 0; k < m->K; k++)
                dh += g[k] * W[(int64_t)k * m->D + d];
            dh /= (float)len;
            for (int t = start; t < start + len; t++)
                dE[(int64_t)m->tokens[t] * m->D + d] += dh;
        }
    }
    return LF_OK;
}

static void bow_set_mode(void *self, int training, uint64_t step) {
    (void)self;
    (void)training;
    (void)step;
}

static float normal(uint64_t *state) { // Box-Muller over splitmix64
    double u[2];
    for (int i = 0; i < 2; i++) {
        uint64_t z = (*state += 0x9e3779b97f4a7c15ULL);
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
        u[i] = ((double)((z ^ (z >> 31)) >> 11) + 0.5) / 9007199254740992.0;
    }
    return (float)(sqrt(-2.0 * log(u[0])) * cos(6.283185307179586 * u[1]));
}

lf_trainable *bow_model_create(int vocab, int dim, int num_labels, int pad_token_id, uint64_t seed) {
    if (vocab < 1 || dim < 1 || num_labels < 2) {
        lf_error(LF_EINVAL, "bow model: vocab (%d), dim (%d) must be >= 1 and num_labels (%d) >= 2", vocab,
                 dim, num_labels);
        return NULL;
    }
    bow_model *m = calloc(1, sizeof *m);
    int64_t sizes[3] = {(int64_t)vocab * dim, (int64_t)num_labels * dim, num_labels}, total = 0;
    for (int i = 0; i < 3; i++)
        total += sizes[i];
    float *arena = m ? calloc(2 * total, sizeof(float)) : NULL;
    if (!arena) {
        free(m);
        lf_error(LF_ENOMEM, "bow model: out of memory for %lld parameters", (long long)total);
        return NULL;
    }
    static const char *names[3] = {"embeddings.weight", "classifier.weight", "classifier.bias"};
    int64_t offset = 0;
    for (int i = 0; i < 3; i++) {
        m->params[i] =
            (lf_trainable_param){names[i], arena + offset, arena + total + offset, sizes[i], i == 2};
        offset += sizes[i];
    }
    uint64_t state = seed;
    for (int64_t i = 0; i < sizes[0] + sizes[1]; i++)
        arena[i] = 0.02f * normal(&state);
    m->V = vocab, m->D = dim, m->K = num_labels, m->arena = arena;
    m->t =
        (lf_trainable){m,           num_labels,           pad_token_id, vocab, 3, m->params, bow_load_batch,
                       bow_forward, bow_forward_backward, bow_set_mode, NULL};
    return &m->t;
}

void bow_model_free(lf_trainable *t) {
    if (!t) return;
    bow_model *m = t->self;
    free(m->arena);
    free(m->tokens);
    free(m->offsets);
    free(m->labels);
    free(m->pooled);
    free(m->dlogits);
    free(m);
}
