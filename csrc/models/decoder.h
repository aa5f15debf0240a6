// Llama / Mistral sequence classifiers (models/decoder.c): the lf_arch of LF_ARCH_LLAMA and
// LF_ARCH_MISTRAL in the model framework of models/model.h.
#pragma once

#include "models/model.h"

extern const lf_arch lf_arch_decoder;
