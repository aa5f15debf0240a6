// Element type conversion: the CUDA twin of lf_convert_to_f32 / lf_convert_from_f32
// (csrc/core/convert.c) for the float types. Frozen weights are uploaded as stored and
// converted on the device to the compute dtype.
#include <cstring>

#include "convert.cuh"

template <typename D, typename S> __global__ void convert_kernel(D *dst, const S *src, int64_t n) {
    int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) dst[i] = from_f32<D>(to_f32(src[i]));
}

int convert_cuda(void *dst, lf_dtype dst_dtype, const void *src, lf_dtype src_dtype, int64_t n,
                 cudaStream_t stream) {
    if (n < 0) return (int)cudaErrorInvalidValue;
    if (n == 0) return 0;
    if (dst_dtype == src_dtype)
        return (int)cudaMemcpyAsync(dst, src, (size_t)n * lf_cuda_dtype_size(dst_dtype),
                                    cudaMemcpyDeviceToDevice, stream);
    return lf_dispatch_dtype(dst_dtype, [&](auto d) {
        return lf_dispatch_dtype(src_dtype, [&](auto s) {
            using D = decltype(d);
            using S = decltype(s);
            convert_kernel<D, S><<<lf_blocks(n, 256), 256, 0, stream>>>((D *)dst, (const S *)src, n);
            return lf_launch_status();
        });
    });
}
