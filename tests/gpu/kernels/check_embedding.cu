// kernels/embedding.cu against csrc/ops/embedding.c, for every table dtype and activation dtype
extern "C" { // before kernel_check.cuh: ops/weight.h defines inline what core/convert.h declares
#include "ops/embedding.h"
}

#include "embedding.cuh"
#include "kernel_check.cuh"

struct embedding_shape {
    int V, T, C;
};

// one token; ids repeated many times (backward's atomics); odd widths; RoBERTa's and Llama's widths
static const embedding_shape embedding_shapes[] = {{5, 1, 7},        {50, 300, 33}, {3, 2000, 129},
                                                   {1000, 64, 1024}, {7, 40, 4096}, {11, 9, 1000}};

// the table as stored in table_dtype on the host: f32 values, or their f16 / bf16 bits
static std::vector<uint32_t> stored_table(const std::vector<float> &values, lf_dtype table_dtype) {
    std::vector<uint32_t> words(table_dtype == LF_F32 ? values.size() : (values.size() + 1) / 2);
    lf_convert_from_f32(values.data(), table_dtype, words.data(), values.size());
    return words;
}

static int32_t *ids_to_device(const std::vector<int32_t> &ids) {
    int32_t *d = NULL;
    CHECK_CUDA(cudaMalloc(&d, ids.size() * sizeof(int32_t) + 1));
    CHECK_CUDA(cudaMemcpy(d, ids.data(), ids.size() * sizeof(int32_t), cudaMemcpyHostToDevice));
    return d;
}

static void check_embedding_shape(lf_dtype dt, lf_dtype table_dtype, embedding_shape shape, uint64_t seed) {
    const int V = shape.V, T = shape.T, C = shape.C;
    const int64_t n = (int64_t)T * C;
    char what[160];
    std::vector<float> table = rounded(random_vector((int64_t)V * C, -1, 1, seed), table_dtype);
    std::vector<float> id_draw = random_vector(T, 0, (float)V, seed + 1);
    std::vector<int32_t> ids(T);
    for (int t = 0; t < T; t++)
        ids[t] = (int32_t)id_draw[t] < V ? (int32_t)id_draw[t] : V - 1;
    std::vector<uint32_t> stored = stored_table(table, table_dtype);
    lf_weight w = lf_weight{stored.data(), table_dtype};
    void *d_table = to_device(table, table_dtype);
    int32_t *d_ids = ids_to_device(ids);

    for (int accumulate = 0; accumulate < 2; accumulate++) {
        std::vector<float> out = rounded(random_vector(n, -1, 1, seed + 2), dt), want = out;
        embedding_forward(want.data(), ids.data(), w, T, C, accumulate);
        want = rounded(want, dt); // the written rows are table values: the GPU rounds them to dt
        void *d_out = to_device(out, dt);
        CHECK_CUDA(embedding_forward_cuda(d_out, d_ids, d_table, table_dtype, V, T, C, accumulate, dt, 0));
        snprintf(what, sizeof what, "embedding_forward V=%d T=%d C=%d table %s accumulate %d", V, T, C,
                 dtype_label(table_dtype), accumulate);
        check_close(what, dt, from_device(d_out, n, dt), want, tolerance(dt));
        CHECK_CUDA(cudaFree(d_out));
    }

    std::vector<float> dout = rounded(random_vector(n, -1, 1, seed + 3), dt);
    std::vector<float> dtable = random_vector((int64_t)V * C, -1, 1, seed + 4), want_dtable = dtable;
    embedding_backward(want_dtable.data(), dout.data(), ids.data(), T, C);
    void *d_dout = to_device(dout, dt), *d_dtable = to_device(dtable, LF_F32);
    CHECK_CUDA(embedding_backward_cuda((float *)d_dtable, d_dout, d_ids, V, T, C, dt, 0));
    snprintf(what, sizeof what, "embedding_backward V=%d T=%d C=%d", V, T, C);
    check_close(what, dt, from_device(d_dtable, (int64_t)V * C, LF_F32), want_dtable, tolerance(LF_F32));
    for (void *p : {d_table, (void *)d_ids, d_dout, d_dtable})
        CHECK_CUDA(cudaFree(p));
}

// ids outside [0, V) are skipped: forward leaves their rows, backward adds nothing for them
static void check_embedding_bad_ids(lf_dtype dt) {
    const int V = 4, T = 6, C = 5;
    const int64_t n = (int64_t)T * C;
    std::vector<int32_t> ids = {0, -1, 3, 4, 1000000, 2}, valid_ids = {0, 3, 2};
    const int valid_rows[] = {0, 2, 5};
    std::vector<float> table = rounded(random_vector((int64_t)V * C, -1, 1, 950), LF_F32);
    std::vector<float> out = rounded(random_vector(n, -1, 1, 951), dt), want = out;
    std::vector<float> dout = rounded(random_vector(n, -1, 1, 952), dt), valid_dout;
    for (int r : valid_rows) {
        for (int c = 0; c < C; c++)
            want[(size_t)r * C + c] = table[(size_t)ids[r] * C + c];
        valid_dout.insert(valid_dout.end(), dout.begin() + (size_t)r * C, dout.begin() + (size_t)(r + 1) * C);
    }
    want = rounded(want, dt);
    std::vector<float> dtable = random_vector((int64_t)V * C, -1, 1, 953), want_dtable = dtable;
    embedding_backward(want_dtable.data(), valid_dout.data(), valid_ids.data(), 3, C);

    void *d_table = to_device(table, LF_F32), *d_out = to_device(out, dt), *d_dout = to_device(dout, dt);
    void *d_dtable = to_device(dtable, LF_F32);
    int32_t *d_ids = ids_to_device(ids);
    CHECK_CUDA(embedding_forward_cuda(d_out, d_ids, d_table, LF_F32, V, T, C, 0, dt, 0));
    check_close("embedding_forward skips ids outside [0, V)", dt, from_device(d_out, n, dt), want,
                tolerance(dt));
    CHECK_CUDA(embedding_backward_cuda((float *)d_dtable, d_dout, d_ids, V, T, C, dt, 0));
    check_close("embedding_backward skips ids outside [0, V)", dt,
                from_device(d_dtable, (int64_t)V * C, LF_F32), want_dtable, tolerance(LF_F32));
    for (void *p : {d_table, d_out, d_dout, d_dtable, (void *)d_ids})
        CHECK_CUDA(cudaFree(p));
}

int main(void) {
    for (lf_dtype dt : check_dtypes) {
        uint64_t seed = 600;
        for (lf_dtype table_dtype : check_dtypes)
            for (embedding_shape shape : embedding_shapes)
                check_embedding_shape(dt, table_dtype, shape, seed += 10);
        check_embedding_bad_ids(dt);
    }
    return check_summary("check_embedding");
}
