// What LayerNorm and RMSNorm share on the GPU: the block size of their one-block-per-row kernels
// and the column sums of their backward (the weight and bias gradients).
#pragma once

#include "common.cuh"

// threads of a block that normalizes one row of C elements (a multiple of 32, as block_sum needs)
static inline int norm_row_threads(int C) { return C <= 1024 ? 128 : 256; }

enum { NORM_COLUMN_TILE = 32, NORM_ROW_LANES = 8, NORM_MAX_ROW_CHUNKS = 256, NORM_MIN_CHUNK_ROWS = 64 };

// dweight, dbias: (C,) f32 += (either may be NULL); dout, inp: (rows, C); mean: (rows,) or NULL (taken
// as 0, RMSNorm), rstd: (rows,). dweight[c] += sum_r dout[r, c] * (inp[r, c] - mean[r]) * rstd[r],
// dbias[c] += sum_r dout[r, c]. Block (32, 8) sums columns [32 * blockIdx.x, +32) over rows
// [rows_per_block * blockIdx.y, +rows_per_block) and adds its sums with atomicAdd, so the blocks of one
// column never race.
template <typename T>
static __global__ void norm_columns_kernel(float *dweight, float *dbias, const T *dout, const T *inp,
                                           const float *mean, const float *rstd, int rows, int C,
                                           int rows_per_block) {
    __shared__ float dw_part[NORM_ROW_LANES][NORM_COLUMN_TILE], db_part[NORM_ROW_LANES][NORM_COLUMN_TILE];
    int c = blockIdx.x * NORM_COLUMN_TILE + threadIdx.x;
    int64_t first = (int64_t)blockIdx.y * rows_per_block;
    int64_t end = first + rows_per_block < rows ? first + rows_per_block : rows;
    float dw = 0.0f, db = 0.0f;
    if (c < C) {
        for (int64_t r = first + threadIdx.y; r < end; r += NORM_ROW_LANES) {
            size_t k = (size_t)r * C + c;
            float dy = to_f32(dout[k]), m = mean != NULL ? mean[r] : 0.0f;
            dw += dy * (to_f32(inp[k]) - m) * rstd[r];
            db += dy;
        }
    }
    dw_part[threadIdx.y][threadIdx.x] = dw;
    db_part[threadIdx.y][threadIdx.x] = db;
    __syncthreads();
    if (threadIdx.y == 0 && c < C) {
        for (int j = 1; j < NORM_ROW_LANES; j++) {
            dw += dw_part[j][threadIdx.x];
            db += db_part[j][threadIdx.x];
        }
        if (dweight != NULL) atomicAdd(dweight + c, dw);
        if (dbias != NULL) atomicAdd(dbias + c, db);
    }
}

// Launches norm_columns_kernel over (rows, C), rows, C >= 1; nothing when dweight and dbias are NULL.
// At most NORM_MAX_ROW_CHUNKS blocks share a column, so gridDim.y stays small.
template <typename T>
static int norm_columns_launch(float *dweight, float *dbias, const T *dout, const T *inp, const float *mean,
                               const float *rstd, int rows, int C, cudaStream_t stream) {
    if (dweight == NULL && dbias == NULL) return 0;
    int64_t chunks = ((int64_t)rows + NORM_MIN_CHUNK_ROWS - 1) / NORM_MIN_CHUNK_ROWS;
    if (chunks > NORM_MAX_ROW_CHUNKS) chunks = NORM_MAX_ROW_CHUNKS;
    int rows_per_block = (int)(((int64_t)rows + chunks - 1) / chunks);
    dim3 grid(lf_blocks(C, NORM_COLUMN_TILE), (unsigned)chunks), block(NORM_COLUMN_TILE, NORM_ROW_LANES);
    norm_columns_kernel<T>
        <<<grid, block, 0, stream>>>(dweight, dbias, dout, inp, mean, rstd, rows, C, rows_per_block);
    return lf_launch_status();
}
