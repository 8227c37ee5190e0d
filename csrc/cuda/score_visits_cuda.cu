// CUDA kernels of the per-epoch scoring (Eqs. 3, 5-12), both metrics at once, in three
// launches on the current stream (plus two memsets of the accumulators):
//   1. metric_pass: U and H of every (i, j) into the workspace, shifted column sums for
//      Eqs. 6-7 (register accumulation, one atomic per column and thread at the end), and
//      the raw masked Gram G = Mᵀ M over each row's co-occurring positives (atomics).
//   2. column_pass: per (metric, label j): v_j, C_jk = G_jk / (N_j N_k) with N = √G_jj + ε,
//      and the per-label factor of φ (the published code's row scale, times v_j where φ
//      is weighted by it).
//   3. weight_pass: one warp per row: δ_i = Σ_j A_ij v_j, φ_i over the pairs of Y_i × Z_i,
//      and the block-reduced range of w = δ + φ (compare-and-swap min / max).
// The passes mirror csrc/cpu/score_visits_cpu.cpp's; every formula is pipeline_math.h's.
#include <ATen/Context.h>
#include <ATen/cuda/CUDAContext.h>
#include <ATen/ops/empty.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>

#include "../ops.h"
#include "../pipeline_math.h"
#include "cuda_utils.cuh"

#include <algorithm>

namespace d2ace_ext {
namespace {

constexpr int kMaxSlots = 8;  // columns per thread held in registers: q <= 8 * 256

// The recorded state of n instances (inputs of Eqs. 1-5), read only.
struct Records {
  const float* window;        // (n, n_t, q)
  const int64_t* pushes;      // (n,)
  const float* loss;          // (n, q)
  const float* flip_average;  // (n, q)
  int64_t n, n_t, q;
  float lambda1;
  bool two_minus_exp;
};

// CSR rows of Y or Z; nnz bounds every row's range (the kernels assert it, so a corrupt
// row_ptr stops at an assertion instead of reading past cols).
struct RowsView {
  const int64_t* ptr;
  const int64_t* cols;
  int64_t nnz;
};

// The block shape of metric_pass, chosen on the host from q. Narrow (q <= kThreads):
// `rows_per_pass` rows of q columns, one column per thread, the block rounded up to
// whole warps. Wide: one row per pass, `slots` columns per thread.
struct MetricShape {
  int threads;
  int64_t rows_per_pass;
  int slots;
  bool narrow;
};

// Narrow: the rows per pass that leave the fewest of the block's threads idle, with
// blocks of 128 to 512 threads (a fixed 256 left up to half of them idle, e.g. at
// q = 129); ties go to the smaller block. Wide: ceil(q / 256) slots, and the fewest
// threads that still cover q with that many slots.
MetricShape metric_shape(int64_t q) {
  const auto whole_warps = [](int64_t threads) { return (threads + 31) / 32 * 32; };
  if (q <= cuda::kThreads) {
    MetricShape best{0, 0, 1, true};
    for (int64_t rows = 1; rows * q <= 2 * cuda::kThreads; ++rows) {
      const int64_t threads = whole_warps(rows * q);
      if (threads < cuda::kThreads / 2) continue;
      // rows * q / threads > best.rows_per_pass * q / best.threads, cross-multiplied
      if (best.threads == 0 || rows * best.threads > best.rows_per_pass * threads) {
        best.threads = static_cast<int>(threads);
        best.rows_per_pass = rows;
      }
    }
    return best;
  }
  const int64_t slots = (q + cuda::kThreads - 1) / cuda::kThreads;
  return {static_cast<int>(whole_warps((q + slots - 1) / slots)), 1, static_cast<int>(slots), false};
}

// U (Eq. 3) and H (Eq. 5) of one (i, j) given row i's ring; neighbouring j are
// neighbouring threads, so the window reads window[i, k, j] are coalesced.
__device__ __forceinline__ void metric_at(const Records& s, const math::Ring& ring, int64_t count, int64_t i,
                                          int64_t j, float& u, float& h) {
  const float* w = s.window + i * s.n_t * s.q + j;
  float fluctuation_sum = 0.0f;
  for (int64_t k = 0; k < s.n_t; ++k) {
    const int64_t next = k + 1 == s.n_t ? 0 : k + 1;  // (k + 1) mod n_t without a 64-bit division
    if (math::ring_step_valid(ring, k)) fluctuation_sum += fabsf(w[next * s.q] - w[k * s.q]);
  }
  const float entropy = count > 0 ? math::entropy_bits<float>(w[ring.newest * s.q]) : math::kUnseenEntropyBits;
  u = math::uncertainty(entropy, fluctuation_sum, s.lambda1, math::fluctuation_weight(s.lambda1, ring.held));
  h = math::hardness(s.loss[i * s.q + j], s.flip_average[i * s.q + j], s.two_minus_exp);
}

__device__ __forceinline__ void metric_at(const Records& s, int64_t i, int64_t j, float& u, float& h) {
  const int64_t count = s.pushes[i];
  metric_at(s, math::ring_of(count, s.n_t), count, i, j, u, h);
}

// Advances (a, b) to the pair `step` places further in the row-major order of a
// rows x `width` grid, keeping 0 <= b < width: the walk a lane takes over a row's pairs
// (pair = a width + b) without the 64-bit / and % of the flattened index. width >= 1.
__device__ __forceinline__ void advance_pair(int64_t& a, int64_t& b, int64_t step, int64_t width) {
  b += step;
  while (b >= width) {
    b -= width;
    ++a;
  }
}

// sums: (4, q) Σ(u - u0), Σ(u - u0)², Σ(h - h0), Σ(h - h0)² with (u0, h0) from row 0;
// gram: (2, q, q). Both zeroed before the launch. kSlots >= 1: that many columns per
// thread, accumulated in registers (unrolled, so the arrays stay out of local memory);
// kSlots = 0: very wide label sets, shape.slots columns per thread, shifted by 0 and
// accumulated in global memory.
// No __launch_bounds__: with one, ptxas capped the wide variants at 128 registers and
// spilled (kSlots >= 5); without, none spills (`ptxas -v`, sm_90: 60 to 168 registers),
// and kSlots = 1, the only variant launched with up to 512 threads, needs at most 128.
template <int kSlots>
__global__ void metric_pass_kernel(Records s, MetricShape shape, RowsView labels, float* __restrict__ metrics,
                                   double* __restrict__ sums, double* __restrict__ gram) {
  constexpr bool kRegisters = kSlots > 0;
  constexpr int kHeld = kRegisters ? kSlots : 1;
  const int64_t n = s.n, q = s.q;
  const int threads = shape.threads;  // == blockDim.x, a multiple of 32
  const int64_t rows_per_pass = shape.rows_per_pass;
  const int64_t lane_row = shape.narrow ? threadIdx.x / q : 0;
  const int64_t column0 = shape.narrow ? threadIdx.x % q : threadIdx.x;
  const bool active = lane_row < rows_per_pass;

  double acc[kHeld][4];
  float shift_u[kHeld], shift_h[kHeld];
#pragma unroll
  for (int sl = 0; sl < kHeld; ++sl) {
    acc[sl][0] = acc[sl][1] = acc[sl][2] = acc[sl][3] = 0.0;
    shift_u[sl] = shift_h[sl] = 0.0f;
    const int64_t j = column0 + static_cast<int64_t>(sl) * threads;
    if (kRegisters && active && j < q) metric_at(s, 0, j, shift_u[sl], shift_h[sl]);
  }

  float* uncertainty = metrics;
  float* hardness = metrics + n * q;
  const int64_t passes = (n + rows_per_pass - 1) / rows_per_pass;
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, warps = threads >> 5;
  // Every thread of a block runs the same passes (the bound depends on blockIdx only),
  // so the barriers inside the loop are reached by all of them.
  for (int64_t pass = blockIdx.x; pass < passes; pass += gridDim.x) {
    const int64_t row0 = pass * rows_per_pass;
    const int64_t i = row0 + lane_row;
    if (active && i < n) {
      const int64_t count = s.pushes[i];
      const math::Ring ring = math::ring_of(count, s.n_t);  // once per row, not per column
      if constexpr (kRegisters) {
#pragma unroll
        for (int sl = 0; sl < kSlots; ++sl) {
          const int64_t j = column0 + static_cast<int64_t>(sl) * threads;
          if (j < q) {
            float u, h;
            metric_at(s, ring, count, i, j, u, h);
            uncertainty[i * q + j] = u;
            hardness[i * q + j] = h;
            const double du = static_cast<double>(u) - shift_u[sl], dh = static_cast<double>(h) - shift_h[sl];
            acc[sl][0] += du;
            acc[sl][1] += du * du;
            acc[sl][2] += dh;
            acc[sl][3] += dh * dh;
          }
        }
      } else {
        for (int sl = 0; sl < shape.slots; ++sl) {
          const int64_t j = column0 + static_cast<int64_t>(sl) * threads;
          if (j >= q) break;
          float u, h;
          metric_at(s, ring, count, i, j, u, h);
          uncertainty[i * q + j] = u;
          hardness[i * q + j] = h;
          atomicAdd(&sums[j], static_cast<double>(u));
          atomicAdd(&sums[q + j], static_cast<double>(u) * u);
          atomicAdd(&sums[2 * q + j], static_cast<double>(h));
          atomicAdd(&sums[3 * q + j], static_cast<double>(h) * h);
        }
      }
    }
    __syncthreads();  // this pass's metrics are visible to the whole block
    const int64_t rows_here = min(rows_per_pass, n - row0);
    for (int64_t rr = warp; rr < rows_here; rr += warps) {
      const int64_t row = row0 + rr;
      const int64_t first = labels.ptr[row], count = labels.ptr[row + 1] - first;
      CUDA_KERNEL_ASSERT(first >= 0 && count >= 0 && first + count <= labels.nnz &&
                         "score_visits: label_ptr is not a valid row pointer of label_cols");
      if (count <= 0) continue;
      // The count x count pairs (a, b) of the row, lane-strided: pair = a count + b.
      int64_t a = 0, b = 0;
      advance_pair(a, b, lane, count);
      for (; a < count; advance_pair(a, b, 32, count)) {
        const int64_t ja = labels.cols[first + a], jb = labels.cols[first + b];
        CUDA_KERNEL_ASSERT(ja >= 0 && ja < q && jb >= 0 && jb < q && "score_visits: label_cols out of range");
        atomicAdd(&gram[ja * q + jb], static_cast<double>(uncertainty[row * q + ja]) * uncertainty[row * q + jb]);
        atomicAdd(&gram[q * q + ja * q + jb], static_cast<double>(hardness[row * q + ja]) * hardness[row * q + jb]);
      }
    }
    __syncthreads();
  }
  if constexpr (kRegisters) {
    if (active) {
#pragma unroll
      for (int sl = 0; sl < kSlots; ++sl) {
        const int64_t j = column0 + static_cast<int64_t>(sl) * threads;
        if (j < q) {
#pragma unroll
          for (int c = 0; c < 4; ++c) atomicAdd(&sums[c * q + j], acc[sl][c]);
        }
      }
    }
  }
}

// One block per (label j, metric m).
__global__ void column_pass_kernel(const double* __restrict__ sums, const double* __restrict__ gram,
                                   const float* __restrict__ metrics, int64_t n, int64_t q, double norm_eps,
                                   bool shifted, bool row_normalize, bool label_weights_in_phi,
                                   double* __restrict__ label_weights, double* __restrict__ correlation,
                                   double* __restrict__ phi_factor) {
  __shared__ double shared[cuda::kWarps];
  const int64_t j = blockIdx.x;
  const int m = blockIdx.y;
  const double* g = gram + m * q * q;
  const double norm_j = math::column_norm(g[j * q + j], norm_eps);
  double row_sum = 0.0;
  for (int64_t k = threadIdx.x; k < q; k += blockDim.x) {
    const double c = math::correlation(g[j * q + k], norm_j, math::column_norm(g[k * q + k], norm_eps));
    correlation[m * q * q + j * q + k] = c;
    row_sum += c;
  }
  row_sum = cuda::block_sum(row_sum, shared);
  if (threadIdx.x == 0) {
    const double shift = shifted ? static_cast<double>(metrics[m * n * q + j]) : 0.0;  // row 0
    const double v = math::label_weight(shift, sums[(2 * m) * q + j], sums[(2 * m + 1) * q + j], n);
    label_weights[m * q + j] = v;
    phi_factor[m * q + j] = math::phi_factor(math::row_scale(row_sum, row_normalize), v, label_weights_in_phi);
  }
}

__global__ void weight_pass_kernel(const float* __restrict__ metrics, const double* __restrict__ label_weights,
                                   const double* __restrict__ correlation, const double* __restrict__ phi_factor,
                                   RowsView labels, RowsView context, int64_t n, int64_t q,
                                   double* __restrict__ delta, double* __restrict__ phi,
                                   double* __restrict__ weight_range) {
  __shared__ double low[2][cuda::kWarps], high[2][cuda::kWarps];
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int64_t warps_total = static_cast<int64_t>(gridDim.x) * cuda::kWarps;
  double my_low[2] = {NAN, NAN}, my_high[2] = {NAN, NAN};
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * cuda::kWarps + warp; i < n; i += warps_total) {
    const int64_t y0 = labels.ptr[i], ny = labels.ptr[i + 1] - y0;
    const int64_t z0 = context.ptr[i], nz = context.ptr[i + 1] - z0;
    CUDA_KERNEL_ASSERT(y0 >= 0 && ny >= 0 && y0 + ny <= labels.nnz &&
                       "score_visits: label_ptr is not a valid row pointer of label_cols");
    CUDA_KERNEL_ASSERT(z0 >= 0 && nz >= 0 && z0 + nz <= context.nnz &&
                       "score_visits: context_ptr is not a valid row pointer of context_cols");
#pragma unroll
    for (int m = 0; m < 2; ++m) {
      const float* a = metrics + m * n * q + i * q;
      const double* v = label_weights + m * q;
      const double* c = correlation + m * q * q;
      double d = 0.0;
      for (int64_t j = lane; j < q; j += 32) d += a[j] * v[j];
      double f = 0.0;
      if (nz > 0) {
        // The ny x nz pairs (e, z) of Y_i x Z_i, lane-strided: pair = e nz + z.
        int64_t e = 0, z = 0;
        advance_pair(e, z, lane, nz);
        for (; e < ny; advance_pair(e, z, 32, nz)) {
          const int64_t j = labels.cols[y0 + e], k = context.cols[z0 + z];
          CUDA_KERNEL_ASSERT(k >= 0 && k < q && "score_visits: context_cols out of range");
          f += math::phi_term(a[j], c[j * q + k], phi_factor[m * q + j]);
        }
      }
      d = cuda::warp_sum(d);
      f = cuda::warp_sum(f);
      if (lane == 0) {
        delta[m * n + i] = d;
        phi[m * n + i] = f;
        my_low[m] = fmin(my_low[m], d + f);
        my_high[m] = fmax(my_high[m], d + f);
      }
    }
  }
  if (lane == 0) {
#pragma unroll
    for (int m = 0; m < 2; ++m) {
      low[m][warp] = my_low[m];
      high[m][warp] = my_high[m];
    }
  }
  __syncthreads();
  if (threadIdx.x < 2) {
    const int m = threadIdx.x;
    double lo = NAN, hi = NAN;
    for (int w = 0; w < cuda::kWarps; ++w) {
      lo = fmin(lo, low[m][w]);
      hi = fmax(hi, high[m][w]);
    }
    if (!isnan(lo)) {  // a block without rows has nothing to add
      cuda::atomic_min_double(&weight_range[2 * m], lo);
      cuda::atomic_max_double(&weight_range[2 * m + 1], hi);
    }
  }
}

// One instantiation per register-slot count (1..kMaxSlots), 0 beyond.
template <int kSlots = kMaxSlots>
void launch_metric_pass(int slots, dim3 grid, const MetricShape& shape, cudaStream_t stream, const Records& state,
                        const RowsView& labels, float* metrics, double* sums, double* gram) {
  if constexpr (kSlots == 0) {
    metric_pass_kernel<0><<<grid, shape.threads, 0, stream>>>(state, shape, labels, metrics, sums, gram);
  } else {
    if (slots == kSlots) {
      metric_pass_kernel<kSlots><<<grid, shape.threads, 0, stream>>>(state, shape, labels, metrics, sums, gram);
    } else {
      launch_metric_pass<kSlots - 1>(slots > kMaxSlots ? 0 : slots, grid, shape, stream, state, labels, metrics,
                                     sums, gram);
    }
  }
}

}  // namespace

ScoreOutputs score_visits_cuda(const at::Tensor& window, const at::Tensor& pushes, const at::Tensor& loss,
                               const at::Tensor& flip_average, const at::Tensor& label_ptr,
                               const at::Tensor& label_cols, const at::Tensor& context_ptr,
                               const at::Tensor& context_cols, const at::Tensor& workspace, double lambda1,
                               bool two_minus_exp, double norm_eps, bool row_normalize,
                               bool label_weights_in_phi) {
  check_score_visits_inputs(window, pushes, loss, flip_average, label_ptr, label_cols, context_ptr,
                            context_cols, workspace, lambda1, norm_eps);
  TORCH_CHECK_VALUE(window.is_cuda(), "score_visits_cuda: tensors must be CUDA tensors");
  // Float64 atomics sum the column statistics, the Gram matrix and the weight range in
  // whatever order the blocks run: the last bits of v, C, δ and φ vary between runs.
  at::globalContext().alertNotDeterministic("score_visits_cuda");
  const c10::cuda::CUDAGuard guard(window.device());
  const cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  const at::Tensor window_c = window.contiguous(), pushes_c = pushes.contiguous(), loss_c = loss.contiguous(),
                   flip_c = flip_average.contiguous(), label_ptr_c = label_ptr.contiguous(),
                   label_cols_c = label_cols.contiguous(), context_ptr_c = context_ptr.contiguous(),
                   context_cols_c = context_cols.contiguous();
  const int64_t n = window_c.size(0), n_t = window_c.size(1), q = window_c.size(2);
  const auto f64 = window_c.options().dtype(at::kDouble);

  // Accumulators: 4q column sums and 2q² Gram entries in one zeroed buffer.
  at::Tensor accum = at::empty({4 * q + 2 * q * q}, f64);
  C10_CUDA_CHECK(cudaMemsetAsync(accum.mutable_data_ptr<double>(), 0, accum.numel() * sizeof(double), stream));
  double* sums = accum.mutable_data_ptr<double>();
  double* gram = sums + 4 * q;
  at::Tensor label_weights = at::empty({2, q}, f64);
  at::Tensor correlation = at::empty({2, q, q}, f64);
  at::Tensor phi_factor = at::empty({2, q}, f64);
  at::Tensor delta = at::empty({2, n}, f64);
  at::Tensor phi = at::empty({2, n}, f64);
  at::Tensor weight_range = at::empty({2, 2}, f64);
  C10_CUDA_CHECK(cudaMemsetAsync(weight_range.mutable_data_ptr<double>(), 0xff, 4 * sizeof(double), stream));

  const Records state{window_c.const_data_ptr<float>(), pushes_c.const_data_ptr<int64_t>(),
                      loss_c.const_data_ptr<float>(), flip_c.const_data_ptr<float>(), n, n_t, q,
                      static_cast<float>(lambda1), two_minus_exp};
  const RowsView labels{label_ptr_c.const_data_ptr<int64_t>(), label_cols_c.const_data_ptr<int64_t>(),
                        label_cols_c.numel()};
  const RowsView context{context_ptr_c.const_data_ptr<int64_t>(), context_cols_c.const_data_ptr<int64_t>(),
                         context_cols_c.numel()};
  const MetricShape shape = metric_shape(q);
  const bool shifted = shape.slots <= kMaxSlots;  // the register variants shift by row 0
  // As many resident threads per multiprocessor as 4 blocks of kThreads, whatever the block.
  const int blocks_per_sm = std::max(1, 4 * cuda::kThreads / shape.threads);
  float* metrics = workspace.mutable_data_ptr<float>();
  launch_metric_pass(shape.slots, dim3(cuda::grid_for(n, shape.rows_per_pass, blocks_per_sm)), shape, stream, state,
                     labels, metrics, sums, gram);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  column_pass_kernel<<<dim3(static_cast<unsigned>(q), 2), cuda::kThreads, 0, stream>>>(
      sums, gram, metrics, n, q, norm_eps, shifted, row_normalize, label_weights_in_phi,
      label_weights.mutable_data_ptr<double>(), correlation.mutable_data_ptr<double>(),
      phi_factor.mutable_data_ptr<double>());
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  weight_pass_kernel<<<cuda::grid_for(n, cuda::kWarps, 8), cuda::kThreads, 0, stream>>>(
      metrics, label_weights.const_data_ptr<double>(), correlation.const_data_ptr<double>(),
      phi_factor.const_data_ptr<double>(), labels, context, n, q, delta.mutable_data_ptr<double>(),
      phi.mutable_data_ptr<double>(), weight_range.mutable_data_ptr<double>());
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return {label_weights, correlation, delta, phi, weight_range};
}

}  // namespace d2ace_ext
