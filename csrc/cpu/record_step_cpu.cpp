// CPU kernel of the per-step recording: for each batch row, the probability and BCE of
// every label, the flip against the previous record (Eq. 4) and the ring-window write.
#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "../ops.h"
#include "../pipeline_math.h"
#include "fast_math_cpu.h"

namespace d2ace_ext {
namespace {

// Rejects out-of-range or repeated indices before anything is written, so a bad batch
// leaves the state untouched (rows are updated in parallel and must be distinct).
void check_indices(const int64_t* idx, int64_t b, int64_t n) {
  std::vector<int64_t> sorted(idx, idx + b);
  std::sort(sorted.begin(), sorted.end());
  if (b > 0) {
    TORCH_CHECK(sorted.front() >= 0 && sorted.back() < n, "record_step: indices must lie in [0, ", n,
                "), got values from ", sorted.front(), " to ", sorted.back());
  }
  TORCH_CHECK(std::adjacent_find(sorted.begin(), sorted.end()) == sorted.end(),
              "record_step: indices must not repeat an instance within one batch");
}

// f̄ = λ2 f + (1 - λ2) f̄_before over one row (Eq. 4), the flip taken on probabilities
// or on 0/1 predictions; one function per mode with restrict pointers, so GCC vectorises.
D2ACE_SIMD_CLONES void ema_row_probability(const float* __restrict now, const float* __restrict before,
                                           const float* __restrict base, float take, float keep, int64_t q,
                                           float* __restrict ema) {
  for (int64_t j = 0; j < q; ++j) ema[j] = take * std::fabs(now[j] - before[j]) + keep * base[j];
}

D2ACE_SIMD_CLONES void ema_row_prediction(const float* __restrict now, const float* __restrict before,
                                          const float* __restrict base, float take, float keep, float threshold,
                                          int64_t q, float* __restrict ema) {
  for (int64_t j = 0; j < q; ++j) {
    const float flip = static_cast<float>((now[j] > threshold) != (before[j] > threshold));
    ema[j] = take * flip + keep * base[j];
  }
}

D2ACE_SIMD_CLONES void logit_row(const float* __restrict x, const float* __restrict y, int64_t q,
                                 float* __restrict probability, float* __restrict loss) {
  fastmath::logit_row(x, y, q, probability, loss);
}

// Rejects NaN outputs, probabilities outside [0, 1] and non-0/1 targets before anything
// is written. One pass of flag accumulation (vectorised) over data that is in cache; it
// replaces three tensor reductions per training step in Python.
void check_values(const float* out, const float* tgt, int64_t count, bool from_logits) {
  int nan = 0, outside = 0, not_binary = 0;
  for (int64_t e = 0; e < count; ++e) {
    const float x = out[e], t = tgt[e];
    nan |= x != x;
    outside |= !(x >= 0.0f && x <= 1.0f);
    not_binary |= t != 0.0f && t != 1.0f;
  }
  TORCH_CHECK(!nan, "record_step: outputs contain NaN; the sampler state was not changed");
  TORCH_CHECK(from_logits || !outside, "record_step: outputs must be probabilities in [0, 1] when they are not logits");
  TORCH_CHECK(!not_binary, "record_step: targets must be 0/1 labels, found other values");
}

}  // namespace

void record_step_cpu(const at::Tensor& window, const at::Tensor& pushes, const at::Tensor& last_epoch,
                     const at::Tensor& loss, const at::Tensor& flip_average, const at::Tensor& flip_base,
                     const at::Tensor& index_errors, const at::Tensor& indices, const at::Tensor& outputs,
                     const at::Tensor& targets,
                     int64_t epoch, bool from_logits, bool per_epoch, bool flip_on_probability,
                     double flip_threshold, double lambda2) {
  check_record_step_inputs(window, pushes, last_epoch, loss, flip_average, flip_base, index_errors, indices,
                           outputs, targets, flip_threshold, lambda2);
  TORCH_CHECK(window.device().is_cpu(), "record_step_cpu: tensors must be on the CPU");
  const int64_t n = window.size(0), n_t = window.size(1), q = window.size(2);
  const at::Tensor idx_c = indices.contiguous(), out_c = outputs.contiguous(), tgt_c = targets.contiguous();
  const int64_t b = idx_c.size(0);
  const int64_t* idx = idx_c.const_data_ptr<int64_t>();
  check_indices(idx, b, n);  // an error at once: index_errors is for the CUDA kernel, which cannot raise

  const float* out = out_c.const_data_ptr<float>();
  const float* tgt = tgt_c.const_data_ptr<float>();
  check_values(out, tgt, b * q, from_logits);
  float* win = window.mutable_data_ptr<float>();
  int64_t* push_count = pushes.mutable_data_ptr<int64_t>();
  int64_t* last = last_epoch.mutable_data_ptr<int64_t>();
  float* latest_loss = loss.mutable_data_ptr<float>();
  float* ema = flip_average.mutable_data_ptr<float>();
  float* ema_base = flip_base.mutable_data_ptr<float>();
  const float keep = static_cast<float>(1.0 - lambda2), take = static_cast<float>(lambda2);
  const float threshold = static_cast<float>(flip_threshold);

  // A batch is ~10^4 elements; below ~8k per thread, waking threads costs more than it saves.
  const int64_t grain = std::max<int64_t>(1, 8192 / std::max<int64_t>(q, 1));
  at::parallel_for(0, b, grain, [&](int64_t begin, int64_t end) {
    std::vector<float> probability(q);
    for (int64_t r = begin; r < end; ++r) {
      const int64_t i = idx[r];
      const int64_t count = push_count[i];
      // Per-epoch windows: a second visit within the epoch overwrites its entry and redoes
      // the epoch's flip update from the EMA value before it.
      const bool push = !per_epoch || last[i] != epoch;
      const math::RecordSlots slots = math::record_slots(count, push, n_t);
      const bool has_previous = slots.has_previous;
      const float* previous = win + (i * n_t + slots.previous) * q;
      float* written = win + (i * n_t + slots.write) * q;
      float* row_ema = ema + i * q;
      float* row_base = ema_base + i * q;
      float* row_loss = latest_loss + i * q;
      if (from_logits) {
        logit_row(out + r * q, tgt + r * q, q, probability.data(), row_loss);
      } else {
        for (int64_t j = 0; j < q; ++j) {
          const math::Record rec = math::from_probability(out[r * q + j], tgt[r * q + j] != 0.0f);
          probability[j] = rec.probability;
          row_loss[j] = rec.loss;
        }
      }
      if (push) std::copy(row_ema, row_ema + q, row_base);  // the EMA before this epoch's update
      if (!has_previous) {
        for (int64_t j = 0; j < q; ++j) row_ema[j] = keep * row_base[j];
      } else if (flip_on_probability) {
        ema_row_probability(probability.data(), previous, row_base, take, keep, q, row_ema);
      } else {
        ema_row_prediction(probability.data(), previous, row_base, take, keep, threshold, q, row_ema);
      }
      std::copy(probability.begin(), probability.end(), written);  // after `previous` was read
      push_count[i] = count + (push ? 1 : 0);
      last[i] = epoch;
    }
  });
}

}  // namespace d2ace_ext
