// Matrix products on the GPU: fastdl's own tiled GEMM, and linear (twin of
// csrc/cpu/linear.cpp) on top of it.
//
// Why not cuBLAS: the CUDA toolkit of a from-source build may not ship it (the machines
// that build fastdl's CI do not) and the `nvidia-cublas` wheel is ~440 MB; an own kernel
// keeps the CUDA backend dependency-free (only the statically linked runtime) and
// deterministic (each C element sums its k products in ascending k, always). The price is
// speed: this is a classic shared-memory tiling (64x64 tile of C per block of 256 threads,
// 16-deep k slabs, a 4x4 register micro-tile per thread, FP32/FP64 FMA, no tensor cores),
// well below cuBLAS/cuDNN peak on large products.
#include "cuda/common.cuh"

namespace fastdl::cuda {
namespace {

constexpr int kTileM = 64, kTileN = 64, kTileK = 16, kMicro = 4;
constexpr int kGemmThreads = (kTileM / kMicro) * (kTileN / kMicro);  // 256

// Element (i, k) of op(A) (M x K) and (k, j) of op(B) (K x N), row-major storage.
template <typename T>
__device__ __forceinline__ T load_a(const T* a, index_t lda, bool trans, index_t i, index_t k) {
  return trans ? a[k * lda + i] : a[i * lda + k];
}

template <typename T>
__global__ void __launch_bounds__(kGemmThreads)
gemm_kernel(bool trans_a, bool trans_b, index_t M, index_t N, index_t K, T alpha, const T* a,
            index_t lda, const T* b, index_t ldb, T beta, T* c, index_t ldc) {
  __shared__ T As[kTileK][kTileM + 1];  // +1: no bank conflicts on the transposing stores
  __shared__ T Bs[kTileK][kTileN + 1];
  const int tid = threadIdx.x, tx = tid % 16, ty = tid / 16;
  const index_t row0 = static_cast<index_t>(blockIdx.y) * kTileM;
  const index_t col0 = static_cast<index_t>(blockIdx.x) * kTileN;
  T acc[kMicro][kMicro];
  for (int i = 0; i < kMicro; ++i)
    for (int j = 0; j < kMicro; ++j) acc[i][j] = T(0);

  for (index_t k0 = 0; k0 < K; k0 += kTileK) {
    // Each thread stages 4 elements of each tile; the index mapping follows the storage
    // order so that neighbouring threads read neighbouring addresses.
    for (int l = 0; l < (kTileM * kTileK) / kGemmThreads; ++l) {
      const int e = tid + l * kGemmThreads;
      const int r = trans_a ? e % kTileM : e / kTileK;
      const int kk = trans_a ? e / kTileM : e % kTileK;
      const index_t gi = row0 + r, gk = k0 + kk;
      As[kk][r] = (gi < M && gk < K) ? load_a(a, lda, trans_a, gi, gk) : T(0);
    }
    for (int l = 0; l < (kTileN * kTileK) / kGemmThreads; ++l) {
      const int e = tid + l * kGemmThreads;
      const int j = trans_b ? e / kTileK : e % kTileN;
      const int kk = trans_b ? e % kTileK : e / kTileN;
      const index_t gj = col0 + j, gk = k0 + kk;
      // op(B)(k, j) = B^T(k, j) = b[j * ldb + k] when transposed.
      Bs[kk][j] = (gj < N && gk < K) ? (trans_b ? b[gj * ldb + gk] : b[gk * ldb + gj]) : T(0);
    }
    __syncthreads();
#pragma unroll
    for (int kk = 0; kk < kTileK; ++kk) {
      T a_frag[kMicro], b_frag[kMicro];
#pragma unroll
      for (int i = 0; i < kMicro; ++i) a_frag[i] = As[kk][ty + 16 * i];
#pragma unroll
      for (int j = 0; j < kMicro; ++j) b_frag[j] = Bs[kk][tx + 16 * j];
#pragma unroll
      for (int i = 0; i < kMicro; ++i)
#pragma unroll
        for (int j = 0; j < kMicro; ++j) acc[i][j] += a_frag[i] * b_frag[j];
    }
    __syncthreads();
  }
  for (int i = 0; i < kMicro; ++i) {
    const index_t gi = row0 + ty + 16 * i;
    if (gi >= M) continue;
    for (int j = 0; j < kMicro; ++j) {
      const index_t gj = col0 + tx + 16 * j;
      if (gj >= N) continue;
      T* out = c + gi * ldc + gj;
      *out = beta == T(0) ? alpha * acc[i][j] : alpha * acc[i][j] + beta * *out;
    }
  }
}

template <typename T>
__global__ void set_bias_kernel(T* y, const T* bias, index_t N, index_t O, index_t P) {
  FASTDL_GRID_LOOP(i, N * O * P) y[i] = bias[(i / P) % O];
}

template <typename T>
__global__ void add_bias_grad_kernel(const T* gy, T* gb, index_t N, index_t O, index_t P) {
  __shared__ double shared[kThreads];
  for (index_t o = blockIdx.x; o < O; o += gridDim.x) {
    double sum = 0.0;
    for (index_t j = threadIdx.x; j < N * P; j += blockDim.x)
      sum += static_cast<double>(gy[((j / P) * O + o) * P + j % P]);
    sum = block_sum(sum, shared);
    if (threadIdx.x == 0) gb[o] += static_cast<T>(sum);
  }
}

}  // namespace

template <typename T>
void gemm(bool trans_a, bool trans_b, index_t m, index_t n, index_t k, T alpha, const T* a,
          index_t lda, const T* b, index_t ldb, T beta, T* c, index_t ldc) {
  if (m <= 0 || n <= 0) return;
  const index_t grid_y = (m + kTileM - 1) / kTileM, grid_x = (n + kTileN - 1) / kTileN;
  if (grid_y > 65535 || grid_x > (index_t(1) << 31) - 1)
    throw std::invalid_argument("gemm: matrix too large for the CUDA grid (" +
                                std::to_string(m) + " x " + std::to_string(n) + ")");
  gemm_kernel<T><<<dim3(static_cast<unsigned int>(grid_x), static_cast<unsigned int>(grid_y)),
                   kGemmThreads>>>(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
  FASTDL_CUDA_LAUNCHED("gemm");
}

template <typename T>
void set_bias(T* y, const T* bias, index_t N, index_t O, index_t P) {
  if (N * O * P <= 0) return;
  set_bias_kernel<T><<<blocks_for(N * O * P), kThreads>>>(y, bias, N, O, P);
  FASTDL_CUDA_LAUNCHED("set_bias");
}

template <typename T>
void add_bias_grad(const T* grad_output, T* grad_bias, index_t N, index_t O, index_t P) {
  if (O <= 0) return;
  add_bias_grad_kernel<T><<<static_cast<unsigned int>(O > 65535 ? 65535 : O), kThreads>>>(
      grad_output, grad_bias, N, O, P);
  FASTDL_CUDA_LAUNCHED("add_bias_grad");
}

// out (N, O) = input (N, I) @ weight (O, I)^T + bias
template <typename T>
void linear_forward(const T* input, const T* weight, const T* bias, T* output, index_t batch,
                    index_t in_features, index_t out_features) {
  if (bias) set_bias(output, bias, batch, out_features, index_t(1));
  gemm<T>(false, true, batch, out_features, in_features, T(1), input, in_features, weight,
          in_features, bias ? T(1) : T(0), output, out_features);
}

template <typename T>
void linear_backward(const T* input, const T* weight, const T* grad_output, T* grad_input,
                     T* grad_weight, T* grad_bias, index_t batch, index_t in_features,
                     index_t out_features) {
  const index_t N = batch, I = in_features, O = out_features;
  if (grad_input) gemm<T>(false, false, N, I, O, T(1), grad_output, O, weight, I, T(0), grad_input, I);
  if (grad_weight) gemm<T>(true, false, O, I, N, T(1), grad_output, O, input, I, T(1), grad_weight, I);
  if (grad_bias) add_bias_grad(grad_output, grad_bias, N, O, index_t(1));
}

#define FASTDL_INSTANTIATE(T)                                                                  \
  template void gemm<T>(bool, bool, index_t, index_t, index_t, T, const T*, index_t, const T*, \
                        index_t, T, T*, index_t);                                              \
  template void set_bias<T>(T*, const T*, index_t, index_t, index_t);                          \
  template void add_bias_grad<T>(const T*, T*, index_t, index_t, index_t);                     \
  template void linear_forward<T>(const T*, const T*, const T*, T*, index_t, index_t, index_t); \
  template void linear_backward<T>(const T*, const T*, const T*, T*, T*, T*, index_t, index_t, \
                                   index_t);
FASTDL_INSTANTIATE(float)
FASTDL_INSTANTIATE(double)
#undef FASTDL_INSTANTIATE

}  // namespace fastdl::cuda
