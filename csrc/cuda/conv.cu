// conv2d on the GPU (twin of csrc/cpu/conv.cpp; formula in kernels.h): im2col + the tiled
// GEMM of gemm.cu, per group, over chunks of the batch.
//
//   col   (C*KH*KW, nb*P)  im2col of nb samples (P = OH*OW); group g owns rows [g*K, (g+1)*K)
//                          with K = C/G*KH*KW, row (c, i, j), column (n, oy, ox)
//   out_g (O/G, nb*P)      = weight_g (O/G, K) @ col_g            then scattered to (N, O, P)
//   backward, with gy_g (O/G, nb*P) gathered from grad_output:
//     grad_weight_g += gy_g @ col_g^T        (accumulated, chunk after chunk: fixed order)
//     col_g          = weight_g^T @ gy_g ;   grad_input = col2im(col) (a gather: written)
//     grad_bias[o]  += sum_{n,p} gy[n, o, p]
// The batch is cut into chunks so that col stays under kColumnBytes.
#include <algorithm>

#include "cuda/common.cuh"

namespace fastdl::cuda {
namespace {

constexpr index_t kColumnBytes = index_t(256) << 20;

template <typename T>
__global__ void im2col_kernel(const T* input, T* col, const Conv2dShape s, index_t n0, index_t nb) {
  const index_t P = s.out_h * s.out_w, cols = nb * P;
  const index_t rows = s.in_channels * s.kernel_h * s.kernel_w;
  FASTDL_GRID_LOOP(e, rows * cols) {
    const index_t row = e / cols, column = e % cols;
    const index_t j = row % s.kernel_w, i = (row / s.kernel_w) % s.kernel_h;
    const index_t c = row / (s.kernel_w * s.kernel_h);
    const index_t n = column / P, p = column % P, oy = p / s.out_w, ox = p % s.out_w;
    const index_t iy = oy * s.stride_h - s.pad_h + i * s.dilation_h;
    const index_t ix = ox * s.stride_w - s.pad_w + j * s.dilation_w;
    col[e] = (iy >= 0 && iy < s.height && ix >= 0 && ix < s.width)
                 ? input[(((n0 + n) * s.in_channels + c) * s.height + iy) * s.width + ix]
                 : T(0);
  }
}

// grad_input[n0 + n, c, iy, ix] = sum over kernel offsets (i, j) whose output position
// (oy, ox) exists of col[(c, i, j), (n, oy, ox)]: a gather, one thread per input element.
template <typename T>
__global__ void col2im_kernel(const T* col, T* grad_input, const Conv2dShape s, index_t n0,
                              index_t nb) {
  const index_t P = s.out_h * s.out_w, cols = nb * P, HW = s.height * s.width;
  FASTDL_GRID_LOOP(e, nb * s.in_channels * HW) {
    const index_t ix = e % s.width, iy = (e / s.width) % s.height;
    const index_t c = (e / HW) % s.in_channels, n = e / (HW * s.in_channels);
    T sum = T(0);
    for (index_t i = 0; i < s.kernel_h; ++i) {
      const index_t ty = iy + s.pad_h - i * s.dilation_h;
      if (ty < 0) break;
      if (ty % s.stride_h) continue;
      const index_t oy = ty / s.stride_h;
      if (oy >= s.out_h) continue;
      for (index_t j = 0; j < s.kernel_w; ++j) {
        const index_t tx = ix + s.pad_w - j * s.dilation_w;
        if (tx < 0) break;
        if (tx % s.stride_w) continue;
        const index_t ox = tx / s.stride_w;
        if (ox >= s.out_w) continue;
        const index_t row = (c * s.kernel_h + i) * s.kernel_w + j;
        sum += col[row * cols + n * P + oy * s.out_w + ox];
      }
    }
    grad_input[(n0 * s.in_channels) * HW + e] = sum;
  }
}

// out[n0 + n, o, p] (+)= tmp[o, n * P + p]  (to_output)  or  tmp[o, n * P + p] = gy[n0 + n, o, p]
template <typename T>
__global__ void scatter_output_kernel(const T* tmp, T* output, index_t O, index_t P, index_t n0,
                                      index_t nb, bool accumulate) {
  FASTDL_GRID_LOOP(e, nb * O * P) {
    const index_t p = e % P, o = (e / P) % O, n = e / (P * O);
    const T v = tmp[o * nb * P + n * P + p];
    T* out = output + (n0 * O) * P + e;
    *out = accumulate ? *out + v : v;
  }
}

template <typename T>
__global__ void gather_grad_kernel(const T* grad_output, T* tmp, index_t O, index_t P, index_t n0,
                                   index_t nb) {
  FASTDL_GRID_LOOP(e, nb * O * P) {
    const index_t p = e % P, o = (e / P) % O, n = e / (P * O);
    tmp[o * nb * P + n * P + p] = grad_output[(n0 * O) * P + e];
  }
}

// Samples per chunk: as many as keep col under kColumnBytes (at least one).
template <typename T>
index_t chunk_samples(const Conv2dShape& s) {
  const index_t per_sample = s.in_channels * s.kernel_h * s.kernel_w * s.out_h * s.out_w *
                             static_cast<index_t>(sizeof(T));
  return std::max<index_t>(1, std::min<index_t>(s.batch, kColumnBytes / std::max<index_t>(per_sample, 1)));
}

}  // namespace

template <typename T>
void conv2d_forward(const T* input, const T* weight, const T* bias, T* output,
                    const Conv2dShape& s) {
  const index_t P = s.out_h * s.out_w, O = s.out_channels, G = s.groups;
  const index_t Og = O / G, K = s.in_channels / G * s.kernel_h * s.kernel_w;
  if (s.batch <= 0 || O <= 0 || P <= 0) return;
  if (bias) set_bias(output, bias, s.batch, O, P);
  const index_t chunk = chunk_samples<T>(s);
  DeviceScratch<T> col(s.in_channels * s.kernel_h * s.kernel_w * chunk * P);
  DeviceScratch<T> tmp(O * chunk * P);
  for (index_t n0 = 0; n0 < s.batch; n0 += chunk) {
    const index_t nb = std::min(chunk, s.batch - n0), cols = nb * P;
    im2col_kernel<T><<<blocks_for(G * K * cols), kThreads>>>(input, col.get(), s, n0, nb);
    FASTDL_CUDA_LAUNCHED("conv2d_forward (im2col)");
    for (index_t g = 0; g < G; ++g)
      gemm<T>(false, false, Og, cols, K, T(1), weight + g * Og * K, K, col.get() + g * K * cols,
              cols, T(0), tmp.get() + g * Og * cols, cols);
    scatter_output_kernel<T><<<blocks_for(nb * O * P), kThreads>>>(tmp.get(), output, O, P, n0,
                                                                  nb, bias != nullptr);
    FASTDL_CUDA_LAUNCHED("conv2d_forward (scatter)");
  }
}

template <typename T>
void conv2d_backward(const T* input, const T* weight, const T* grad_output, T* grad_input,
                     T* grad_weight, T* grad_bias, const Conv2dShape& s) {
  const index_t P = s.out_h * s.out_w, O = s.out_channels, G = s.groups;
  const index_t Og = O / G, K = s.in_channels / G * s.kernel_h * s.kernel_w;
  if (s.batch <= 0 || O <= 0 || P <= 0) {
    if (grad_input && s.batch > 0) fill(grad_input, s.batch * s.in_channels * s.height * s.width, 0.0);
    return;
  }
  if (grad_bias) add_bias_grad(grad_output, grad_bias, s.batch, O, P);
  if (!grad_input && !grad_weight) return;
  const index_t chunk = chunk_samples<T>(s);
  DeviceScratch<T> col(s.in_channels * s.kernel_h * s.kernel_w * chunk * P);
  DeviceScratch<T> tmp(O * chunk * P);
  for (index_t n0 = 0; n0 < s.batch; n0 += chunk) {
    const index_t nb = std::min(chunk, s.batch - n0), cols = nb * P;
    gather_grad_kernel<T><<<blocks_for(nb * O * P), kThreads>>>(grad_output, tmp.get(), O, P, n0, nb);
    FASTDL_CUDA_LAUNCHED("conv2d_backward (gather)");
    if (grad_weight) {
      im2col_kernel<T><<<blocks_for(G * K * cols), kThreads>>>(input, col.get(), s, n0, nb);
      FASTDL_CUDA_LAUNCHED("conv2d_backward (im2col)");
      for (index_t g = 0; g < G; ++g)
        gemm<T>(false, true, Og, K, cols, T(1), tmp.get() + g * Og * cols, cols,
                col.get() + g * K * cols, cols, T(1), grad_weight + g * Og * K, K);
    }
    if (grad_input) {
      for (index_t g = 0; g < G; ++g)
        gemm<T>(true, false, K, cols, Og, T(1), weight + g * Og * K, K, tmp.get() + g * Og * cols,
                cols, T(0), col.get() + g * K * cols, cols);
      col2im_kernel<T><<<blocks_for(nb * s.in_channels * s.height * s.width), kThreads>>>(
          col.get(), grad_input, s, n0, nb);
      FASTDL_CUDA_LAUNCHED("conv2d_backward (col2im)");
    }
  }
}

#define FASTDL_INSTANTIATE(T)                                                                    \
  template void conv2d_forward<T>(const T*, const T*, const T*, T*, const Conv2dShape&);         \
  template void conv2d_backward<T>(const T*, const T*, const T*, T*, T*, T*, const Conv2dShape&);
FASTDL_INSTANTIATE(float)
FASTDL_INSTANTIATE(double)
#undef FASTDL_INSTANTIATE

}  // namespace fastdl::cuda
