#define _GNU_SOURCE // syscall (arch_prctl)
#include "ops/matmul_bf16.h"

#include <cpuid.h>
#include <errno.h>
#include <oneapi/dnnl/dnnl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "core/error.h"
#include "core/simd.h"

// ----------------------------------------------------------------------------- the library

static int dnnl_fail(dnnl_status_t s, const char *what, const char *name) {
    return lf_error(s == dnnl_out_of_memory ? LF_ENOMEM : LF_EINVAL, "oneDNN %s failed for %s: status %d",
                    what, name, (int)s);
}

// One CPU engine per process; a stream per calling thread (a stream is not for concurrent use: two
// models may compute at once from two Python threads), destroyed with its thread.
static dnnl_engine_t engine;
static dnnl_status_t engine_status = dnnl_success;
static pthread_once_t engine_once = PTHREAD_ONCE_INIT;
static pthread_key_t stream_key;

static void stream_destroy(void *stream) { dnnl_stream_destroy(stream); }

static void engine_init(void) {
    engine_status = dnnl_engine_create(&engine, dnnl_cpu, 0);
    if (engine_status == dnnl_success && pthread_key_create(&stream_key, stream_destroy) != 0)
        engine_status = dnnl_out_of_memory;
}

// this thread's stream (made at its first product), or NULL with the error set
static dnnl_stream_t thread_stream(const char *name) {
    pthread_once(&engine_once, engine_init);
    if (engine_status != dnnl_success) {
        dnnl_fail(engine_status, "CPU engine", name);
        return NULL;
    }
    dnnl_stream_t stream = pthread_getspecific(stream_key);
    if (stream != NULL) return stream;
    dnnl_status_t s = dnnl_stream_create(&stream, engine, dnnl_stream_default_flags);
    if (s != dnnl_success || pthread_setspecific(stream_key, stream) != 0) {
        if (s == dnnl_success) dnnl_stream_destroy(stream);
        dnnl_fail(s != dnnl_success ? s : dnnl_out_of_memory, "stream", name);
        return NULL;
    }
    return stream;
}

#define DNNL_TRY(call, what)                                                                                 \
    do {                                                                                                     \
        dnnl_status_t s_ = (call);                                                                           \
        if (s_ != dnnl_success) {                                                                            \
            rc = dnnl_fail(s_, what, name);                                                                  \
            goto done;                                                                                       \
        }                                                                                                    \
    } while (0)

// ----------------------------------------------------------------------------- bf16 rounding

LF_VECTOR_CLONES static void round_chunk(uint16_t *restrict dst, const float *restrict src, size_t n) {
    for (size_t i = 0; i < n; i++)
        dst[i] = lf_f32_to_bf16(src[i]);
}

void matmul_bf16_round(uint16_t *dst, const float *src, size_t n) {
    size_t chunks = (n + LF_VECTOR_CHUNK - 1) / LF_VECTOR_CHUNK;
#pragma omp parallel for schedule(static) if (chunks > 1)
    for (size_t c = 0; c < chunks; c++) {
        size_t o = c * LF_VECTOR_CHUNK;
        round_chunk(dst + o, src + o, n - o < LF_VECTOR_CHUNK ? n - o : LF_VECTOR_CHUNK);
    }
}

// ----------------------------------------------------------------------------- packed weights

// One product with W: its primitive (rows M given at execution) and W in the layout it prefers.
typedef struct {
    dnnl_primitive_t primitive;
    dnnl_memory_desc_t weights_md;
    void *weights;
    size_t bytes;
} product;

struct matmul_bf16_weight {
    int C, OC, with_bias;
    product forward;  // x: (M, C) @ W^T: weights (K = C, N = OC), W read as "ba"
    product backward; // dy: (M, OC) @ W: weights (K = OC, N = C), W read as "ab"; dst +=
};

static void product_free(product *p) {
    if (p->primitive != NULL) dnnl_primitive_destroy(p->primitive);
    if (p->weights_md != NULL) dnnl_memory_desc_destroy(p->weights_md);
    free(p->weights);
    memset(p, 0, sizeof *p);
}

// p for (M, K) bf16 @ (K, N) -> (M, N) f32; w_plain: W bf16 in tag w_tag; accumulate: dst +=
static int product_make(product *p, const uint16_t *w_plain, int K, int N, dnnl_format_tag_t w_tag,
                        int with_bias, int accumulate, const char *name) {
    int rc = LF_OK;
    dnnl_dims_t src_dims = {DNNL_RUNTIME_DIM_VAL, K}, w_dims = {K, N}, dst_dims = {DNNL_RUNTIME_DIM_VAL, N},
                bias_dims = {1, N};
    dnnl_memory_desc_t src_md = NULL, any_md = NULL, plain_md = NULL, dst_md = NULL, bias_md = NULL;
    dnnl_primitive_attr_t attr = NULL;
    dnnl_post_ops_t ops = NULL;
    dnnl_primitive_desc_t pd = NULL, reorder_pd = NULL;
    dnnl_primitive_t reorder = NULL;
    dnnl_memory_t from = NULL, to = NULL;
    dnnl_stream_t stream = thread_stream(name);
    if (stream == NULL) return lf_error_code();
    DNNL_TRY(dnnl_memory_desc_create_with_tag(&src_md, 2, src_dims, dnnl_bf16, dnnl_ab), "memory desc");
    DNNL_TRY(dnnl_memory_desc_create_with_tag(&any_md, 2, w_dims, dnnl_bf16, dnnl_format_tag_any),
             "memory desc");
    DNNL_TRY(dnnl_memory_desc_create_with_tag(&plain_md, 2, w_dims, dnnl_bf16, w_tag), "memory desc");
    DNNL_TRY(dnnl_memory_desc_create_with_tag(&dst_md, 2, dst_dims, dnnl_f32, dnnl_ab), "memory desc");
    if (with_bias)
        DNNL_TRY(dnnl_memory_desc_create_with_tag(&bias_md, 2, bias_dims, dnnl_f32, dnnl_ab), "memory desc");
    DNNL_TRY(dnnl_primitive_attr_create(&attr), "attributes");
    if (accumulate) {
        DNNL_TRY(dnnl_post_ops_create(&ops), "post-ops");
        DNNL_TRY(dnnl_post_ops_append_sum(ops, 1.0f, 0, dnnl_data_type_undef), "sum post-op");
        DNNL_TRY(dnnl_primitive_attr_set_post_ops(attr, ops), "post-ops");
    }
    DNNL_TRY(dnnl_matmul_primitive_desc_create(&pd, engine, src_md, any_md, bias_md, dst_md, attr), "matmul");
    DNNL_TRY(dnnl_primitive_create(&p->primitive, pd), "matmul");
    DNNL_TRY(
        dnnl_memory_desc_clone(&p->weights_md, dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 0)),
        "memory desc");
    p->bytes = dnnl_memory_desc_get_size(p->weights_md);
    p->weights = aligned_alloc(64, (p->bytes + 63) / 64 * 64);
    if (p->weights == NULL) {
        rc = lf_error(LF_ENOMEM, "out of memory packing %s for bf16 (%zu bytes)", name, p->bytes);
        goto done;
    }
    DNNL_TRY(dnnl_memory_create(&from, plain_md, engine, (void *)w_plain), "memory");
    DNNL_TRY(dnnl_memory_create(&to, p->weights_md, engine, p->weights), "memory");
    DNNL_TRY(dnnl_reorder_primitive_desc_create(&reorder_pd, plain_md, engine, p->weights_md, engine, NULL),
             "reorder");
    DNNL_TRY(dnnl_primitive_create(&reorder, reorder_pd), "reorder");
    dnnl_exec_arg_t args[] = {{DNNL_ARG_FROM, from}, {DNNL_ARG_TO, to}};
    DNNL_TRY(dnnl_primitive_execute(reorder, stream, 2, args), "reorder");
    DNNL_TRY(dnnl_stream_wait(stream), "reorder");
done:
    if (reorder != NULL) dnnl_primitive_destroy(reorder);
    if (reorder_pd != NULL) dnnl_primitive_desc_destroy(reorder_pd);
    if (from != NULL) dnnl_memory_destroy(from);
    if (to != NULL) dnnl_memory_destroy(to);
    if (pd != NULL) dnnl_primitive_desc_destroy(pd);
    if (ops != NULL) dnnl_post_ops_destroy(ops);
    if (attr != NULL) dnnl_primitive_attr_destroy(attr);
    dnnl_memory_desc_t mds[] = {src_md, any_md, plain_md, dst_md, bias_md};
    for (size_t i = 0; i < sizeof mds / sizeof mds[0]; i++)
        if (mds[i] != NULL) dnnl_memory_desc_destroy(mds[i]);
    return rc;
}

int matmul_bf16_pack(matmul_bf16_weight **out, lf_weight w, int C, int OC, int with_bias, const char *name) {
    *out = NULL;
    if (w.data == NULL || C <= 0 || OC <= 0 || !lf_dtype_is_float(w.dtype))
        return lf_error(LF_EINVAL, "bf16 packing of %s: no data or bad shape (%d, %d)", name, OC, C);
    if (thread_stream(name) == NULL) return lf_error_code();
    size_t n = (size_t)OC * (size_t)C;
    matmul_bf16_weight *p = calloc(1, sizeof *p);
    uint16_t *plain = w.dtype == LF_BF16 ? NULL : malloc(n * sizeof(uint16_t));
    float *f32 = w.dtype == LF_F16 ? malloc(n * sizeof(float)) : NULL;
    int rc = LF_OK;
    if (p == NULL || (w.dtype != LF_BF16 && plain == NULL) || (w.dtype == LF_F16 && f32 == NULL)) {
        rc = lf_error(LF_ENOMEM, "out of memory packing %s for bf16", name);
        goto out;
    }
    if (w.dtype == LF_F16) weight_to_f32(f32, w, 0, (int64_t)n);
    if (plain != NULL) matmul_bf16_round(plain, w.dtype == LF_F32 ? (const float *)w.data : f32, n);
    const uint16_t *bf = plain != NULL ? plain : (const uint16_t *)w.data;
    *p = (matmul_bf16_weight){.C = C, .OC = OC, .with_bias = with_bias};
    rc = product_make(&p->forward, bf, C, OC, dnnl_ba, with_bias, 0, name);
    if (rc == LF_OK) rc = product_make(&p->backward, bf, OC, C, dnnl_ab, 0, 1, name);
out:
    free(plain);
    free(f32);
    if (rc != LF_OK) {
        matmul_bf16_free(p);
        return rc;
    }
    *out = p;
    return LF_OK;
}

void matmul_bf16_free(matmul_bf16_weight *w) {
    if (w == NULL) return;
    product_free(&w->forward);
    product_free(&w->backward);
    free(w);
}

size_t matmul_bf16_bytes(const matmul_bf16_weight *w) { return w->forward.bytes + w->backward.bytes; }

// ----------------------------------------------------------------------------- products

// dst: (M, N) f32 (=, or += for the backward product) src: (M, K) bf16 @ the packed weights
static int product_run(const product *p, float *dst, const uint16_t *src, const float *bias, int M, int K,
                       int N) {
    const char *name = "a bf16 product";
    int rc = LF_OK;
    dnnl_dims_t src_dims = {M, K}, dst_dims = {M, N}, bias_dims = {1, N};
    dnnl_memory_desc_t src_md = NULL, dst_md = NULL, bias_md = NULL;
    dnnl_memory_t s = NULL, w = NULL, d = NULL, b = NULL;
    dnnl_stream_t stream = thread_stream(name);
    if (stream == NULL) return lf_error_code();
    DNNL_TRY(dnnl_memory_desc_create_with_tag(&src_md, 2, src_dims, dnnl_bf16, dnnl_ab), "memory desc");
    DNNL_TRY(dnnl_memory_desc_create_with_tag(&dst_md, 2, dst_dims, dnnl_f32, dnnl_ab), "memory desc");
    DNNL_TRY(dnnl_memory_create(&s, src_md, engine, (void *)src), "memory");
    DNNL_TRY(dnnl_memory_create(&w, p->weights_md, engine, p->weights), "memory");
    DNNL_TRY(dnnl_memory_create(&d, dst_md, engine, dst), "memory");
    dnnl_exec_arg_t args[4] = {{DNNL_ARG_SRC, s}, {DNNL_ARG_WEIGHTS, w}, {DNNL_ARG_DST, d}};
    int nargs = 3;
    if (bias != NULL) {
        DNNL_TRY(dnnl_memory_desc_create_with_tag(&bias_md, 2, bias_dims, dnnl_f32, dnnl_ab), "memory desc");
        DNNL_TRY(dnnl_memory_create(&b, bias_md, engine, (void *)bias), "memory");
        args[nargs++] = (dnnl_exec_arg_t){DNNL_ARG_BIAS, b};
    }
    DNNL_TRY(dnnl_primitive_execute(p->primitive, stream, nargs, args), "matmul");
    DNNL_TRY(dnnl_stream_wait(stream), "matmul");
done:
    dnnl_memory_t mems[] = {s, w, d, b};
    for (size_t i = 0; i < sizeof mems / sizeof mems[0]; i++)
        if (mems[i] != NULL) dnnl_memory_destroy(mems[i]);
    dnnl_memory_desc_t mds[] = {src_md, dst_md, bias_md};
    for (size_t i = 0; i < sizeof mds / sizeof mds[0]; i++)
        if (mds[i] != NULL) dnnl_memory_desc_destroy(mds[i]);
    return rc;
}

int matmul_bf16_forward(float *out, const float *x, const matmul_bf16_weight *w, const float *bias, int T,
                        uint16_t *scratch) {
    if (T <= 0) return LF_OK;
    if ((bias != NULL) != w->with_bias)
        return lf_error(LF_EINVAL, "bf16 linear packed %s a bias called %s one",
                        w->with_bias ? "with" : "without", bias != NULL ? "with" : "without");
    matmul_bf16_round(scratch, x, (size_t)T * w->C);
    return product_run(&w->forward, out, scratch, bias, T, w->C, w->OC);
}

int matmul_bf16_backward(float *dx, const float *dout, const matmul_bf16_weight *w, int T, int accumulate,
                         uint16_t *scratch) {
    if (T <= 0 || dx == NULL) return LF_OK;
    matmul_bf16_round(scratch, dout, (size_t)T * w->OC);
    // one primitive (+=) per weight: a second (=) one measured no faster on roberta-large's steady steps
    // and JITs its kernels again at each new token count; a written dx is zeroed first
    if (!accumulate) memset(dx, 0, (size_t)T * (size_t)w->C * sizeof(float));
    return product_run(&w->backward, dx, scratch, NULL, T, w->OC, w->C);
}

// ----------------------------------------------------------------------------- the CPU

enum { ARCH_REQ_XCOMP_PERM = 0x1023, XFEATURE_XTILEDATA = 18 };

int matmul_bf16_cpu_support(char *reason, size_t size) {
    unsigned a, b, c, d;
    int amx = 0, avx512_bf16 = 0;
    if (__get_cpuid_count(7, 0, &a, &b, &c, &d)) amx = (d >> 22 & 1) && (d >> 24 & 1); // AMX-BF16, AMX-TILE
    if (__get_cpuid_count(7, 1, &a, &b, &c, &d)) avx512_bf16 = a >> 5 & 1;
    static int permission = -1, perm_errno = 0; // asked once per process; the answer does not change
    if (amx && permission < 0) {
        permission = syscall(SYS_arch_prctl, ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA) == 0;
        perm_errno = permission ? 0 : errno;
    }
    if (amx && permission) {
        snprintf(reason, size, "AMX-BF16 with the kernel's tile permission (arch_prctl ARCH_REQ_XCOMP_PERM)");
        return 1;
    }
    char why[160] = "";
    if (amx)
        snprintf(why, sizeof why,
                 "the kernel refused the AMX tile permission (arch_prctl ARCH_REQ_XCOMP_PERM: %s)",
                 strerror(perm_errno));
    else
        snprintf(why, sizeof why, "no AMX-BF16 on this CPU");
    if (avx512_bf16) {
        snprintf(reason, size, "AVX512-BF16 (%s)", why);
        return 1;
    }
    snprintf(reason, size, "%s and no AVX512-BF16: bf16 products are slower than float32 here", why);
    return 0;
}

void matmul_bf16_library(char *version, size_t size, char *isa, size_t isa_size) {
    const dnnl_version_t *v = dnnl_version();
    snprintf(version, size, "%d.%d.%d (%s)", v->major, v->minor, v->patch, v->hash);
    static const struct {
        dnnl_cpu_isa_t isa;
        const char *name;
    } names[] = {{dnnl_cpu_isa_avx512_core_amx_fp16, "avx512_core_amx_fp16"},
                 {dnnl_cpu_isa_avx512_core_amx, "avx512_core_amx"},
                 {dnnl_cpu_isa_avx512_core_fp16, "avx512_core_fp16"},
                 {dnnl_cpu_isa_avx512_core_bf16, "avx512_core_bf16"},
                 {dnnl_cpu_isa_avx512_core_vnni, "avx512_core_vnni"},
                 {dnnl_cpu_isa_avx512_core, "avx512_core"},
                 {dnnl_cpu_isa_avx2_vnni_2, "avx2_vnni_2"},
                 {dnnl_cpu_isa_avx2_vnni, "avx2_vnni"},
                 {dnnl_cpu_isa_avx2, "avx2"},
                 {dnnl_cpu_isa_avx, "avx"},
                 {dnnl_cpu_isa_sse41, "sse41"}};
    dnnl_cpu_isa_t e = dnnl_get_effective_cpu_isa();
    snprintf(isa, isa_size, "default");
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if ((e & names[i].isa) == names[i].isa) {
            snprintf(isa, isa_size, "%s", names[i].name);
            break;
        }
}
