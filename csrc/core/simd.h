// Elementwise loops compiled for several x86-64 levels, picked at load time (GCC ifunc), so a
// portable build still runs them with AVX-512 or AVX2 + FMA where the CPU has them. Such a
// loop goes in a function of its own (LF_VECTOR_CLONES), called per chunk of
// LF_VECTOR_CHUNK elements from an OpenMP loop.
#pragma once

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define LF_VECTOR_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define LF_VECTOR_CLONES
#endif

#define LF_VECTOR_CHUNK 4096
