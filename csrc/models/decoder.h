// Llama / Mistral sequence classifiers (models/decoder.c: the lf_arch of LF_ARCH_LLAMA and
// LF_ARCH_MISTRAL in the model framework of models/model.h).
//
// What the CPU decoder (decoder.c) and the CUDA decoder (kernels/models/decoder.cu) share: the
// indices of each layer's tensors in the model's tables (m->arch_state is a dec_state) and the
// dropout / LoRA stream sites, so that both draw the same masks.
#pragma once

#include <stdint.h>

// the projections of a layer, in lora_targets order
enum { DEC_Q, DEC_K, DEC_V, DEC_O, DEC_GATE, DEC_UP, DEC_DOWN, DEC_NPROJ };

typedef struct {
    int lin[DEC_NPROJ];                  // linears
    int input_norm, post_attention_norm; // RMSNorm weights (frozen indices)
} dec_layer;

typedef struct {
    int embed, final_norm; // embed_tokens, model.norm (frozen indices)
    int score;             // the head's linear
    // the norm weights as f32, ((2L + 1), C): 2l input, 2l+1 post-attention, 2L final; converted
    // once per change of the frozen weights (frozen_version)
    float *norms;
    int norms_ready;
    uint64_t norms_version;
    dec_layer layers[];
} dec_state;

// dropout / LoRA stream sites of a model of L layers: projection p of layer l, the score head,
// the attention probabilities of layer l
static inline int dec_linear_site(int l, int p) { return l * DEC_NPROJ + p; }
static inline int dec_score_site(int L) { return L * DEC_NPROJ; }
static inline int dec_attention_site(int L, int l) { return L * DEC_NPROJ + 1 + l; }
