// What the CPU encoder (encoder.c) and the CUDA encoder (kernels/models/encoder.cu) share: the
// indices of each layer's tensors in the model's tables (m->arch_state is an enc_state) and the
// dropout / LoRA stream sites, so that both draw the same masks.
#pragma once

// the linears of a layer, in lora_targets order
enum { ENC_Q, ENC_K, ENC_V, ENC_O, ENC_I, ENC_F, ENC_N_LINEARS };

typedef struct {
    int lin[ENC_N_LINEARS];
    int ln1_w, ln1_b, ln2_w, ln2_b; // frozen indices
} enc_layer;

typedef struct {
    int word, pos, type, ln_w, ln_b; // embeddings (frozen indices)
    int head_dense, head_out;        // linears
    int pre_dropout;                 // RoBERTa's head drops out its input
    enc_layer layers[];
} enc_state;

// dropout / LoRA stream sites
enum { SITE_EMB = 0, SITE_HEAD_IN = 1, SITE_HEAD_MID = 2, SITE_HEAD_DENSE = 3, SITE_HEAD_OUT = 4 };
// the sites of layer l; k: 0 attention probabilities, 1 attention output, 2 FFN output, 3+ linears
static inline int layer_site(int l, int k) { return 16 + 16 * l + k; }
