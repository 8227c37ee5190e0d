// CUDA kernel of the per-step recording: one block per batch row, threads over labels,
// so each row's window slot, loss, flip EMA and (epoch windows) base are read and written
// coalesced.
// Nothing here synchronises with the host, so nothing checks values: d2ace_ext/ops.py
// checks a CUDA step's values (and its targets against `labels`) before the launch, with
// one host read; the formulas are pipeline_math.h's, as on the CPU.
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>

#include "../ops.h"
#include "../pipeline_math.h"
#include "cuda_utils.cuh"

namespace d2ace_ext {
namespace {

__global__ void record_step_kernel(float* __restrict__ window, int64_t* __restrict__ pushes,
                                   int64_t* __restrict__ last_epoch, float* __restrict__ loss,
                                   float* __restrict__ flip_average, float* __restrict__ flip_base,
                                   unsigned long long* __restrict__ index_errors,
                                   const int64_t* __restrict__ indices, const float* __restrict__ outputs,
                                   const float* __restrict__ targets, int64_t n, int64_t n_t, int64_t q,
                                   int64_t epoch, bool from_logits, bool per_epoch, bool on_probability,
                                   float threshold, float take, float keep) {
  const int64_t r = blockIdx.x;
  const int64_t i = indices[r];
  if (i < 0 || i >= n) {  // the whole block leaves, before any barrier: the row is skipped and counted
    if (threadIdx.x == 0) atomicAdd(index_errors, 1ull);
    return;
  }
  // Every thread reads the row's counters before thread 0 updates them (after the barrier).
  const int64_t count = pushes[i];
  const bool push = !per_epoch || last_epoch[i] != epoch;
  const math::RecordSlots slots = math::record_slots(count, push, n_t);
  const bool has_previous = slots.has_previous;
  const float* previous = window + (i * n_t + slots.previous) * q;
  float* written = window + (i * n_t + slots.write) * q;
  for (int64_t j = threadIdx.x; j < q; j += blockDim.x) {
    const float x = outputs[r * q + j];
    const bool positive = targets[r * q + j] != 0.0f;
    const math::Record rec = from_logits ? math::from_logit(x, positive) : math::from_probability(x, positive);
    const float f = has_previous ? math::flip_value(rec.probability, previous[j], on_probability, threshold) : 0.0f;
    // Visit windows push on every visit, so f̄ before this update is flip_average itself
    // and flip_base (epoch windows only) is neither read nor written.
    const float before = push ? flip_average[i * q + j] : flip_base[i * q + j];
    if (per_epoch) flip_base[i * q + j] = before;
    flip_average[i * q + j] = math::flip_average(f, before, take, keep);
    loss[i * q + j] = rec.loss;
    written[j] = rec.probability;  // the same thread read previous[j] above
  }
  __syncthreads();
  if (threadIdx.x == 0) {
    pushes[i] = count + (push ? 1 : 0);
    last_epoch[i] = epoch;
  }
}

}  // namespace

void record_step_cuda(const at::Tensor& window, const at::Tensor& pushes, const at::Tensor& last_epoch,
                      const at::Tensor& loss, const at::Tensor& flip_average, const at::Tensor& flip_base,
                      const at::Tensor& index_errors, const at::Tensor& indices, const at::Tensor& outputs,
                      const at::Tensor& targets, int64_t epoch, bool from_logits, bool per_epoch,
                      bool flip_on_probability, double flip_threshold, double lambda2,
                      const std::optional<at::Tensor>& labels) {
  check_record_step_inputs(window, pushes, last_epoch, loss, flip_average, flip_base, index_errors, indices,
                           outputs, targets, flip_threshold, lambda2, labels);
  TORCH_CHECK_VALUE(window.is_cuda(), "record_step_cuda: tensors must be CUDA tensors");
  // Range and distinctness of indices are not checked here, nor targets against labels:
  // that needs the values on the host, a synchronisation every step. An out-of-range index skips its row and adds one
  // to index_errors, which the caller reads when it synchronises anyway (VisitState does
  // at each scoring); repeated indices are a data race between their blocks.
  const c10::cuda::CUDAGuard guard(window.device());
  const at::Tensor idx = indices.contiguous(), out = outputs.contiguous(), tgt = targets.contiguous();
  const int64_t b = idx.size(0);
  if (b == 0) return;
  const int64_t n = window.size(0), n_t = window.size(1), q = window.size(2);
  const int threads = static_cast<int>(std::max<int64_t>(32, std::min<int64_t>(cuda::kThreads, ((q + 31) / 32) * 32)));
  record_step_kernel<<<static_cast<unsigned>(b), threads, 0, at::cuda::getCurrentCUDAStream()>>>(
      window.mutable_data_ptr<float>(), pushes.mutable_data_ptr<int64_t>(), last_epoch.mutable_data_ptr<int64_t>(),
      loss.mutable_data_ptr<float>(), flip_average.mutable_data_ptr<float>(), flip_base.mutable_data_ptr<float>(),
      reinterpret_cast<unsigned long long*>(index_errors.mutable_data_ptr<int64_t>()), idx.const_data_ptr<int64_t>(),
      out.const_data_ptr<float>(), tgt.const_data_ptr<float>(), n, n_t, q, epoch,
      from_logits, per_epoch, flip_on_probability, static_cast<float>(flip_threshold),
      static_cast<float>(lambda2), static_cast<float>(1.0 - lambda2));
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

}  // namespace d2ace_ext
