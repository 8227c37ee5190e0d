// CPU kernel of the per-step recording: for each batch row, the probability and BCE of
// every label, the flip against the previous record (Eq. 4) and the ring-window write.
//
// Two passes. The checks read only the batch (and the training labels' rows), so a bad
// step raises before anything is written; the messages are validation.py's, word for
// word, since either side may be the one that rejects a user's step. Then the rows are
// recorded. A batch of ~10^4 values is recorded by the calling thread: it takes ~0.1 ms,
// less than a parallel region costs whenever another process holds a core. What the
// recording waits on is memory: every instance's rows are cache misses in five arrays (four
// under visit windows, which need no flip base).
// The counters (which name the window slots) are fetched while the checks run, the
// slots of every row are computed next, and the row loop prefetches the rows of the
// visit a few rows ahead.
#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <sstream>
#include <vector>

#include "../ops.h"
#include "../pipeline_math.h"
#include "fast_math_cpu.h"

namespace d2ace_ext {
namespace {

// Batch values below which the rows are recorded serially (see the file comment).
constexpr int64_t kSerialBatchValues = 1 << 16;
// How many rows ahead the row loop prefetches a visit's rows.
constexpr int64_t kRowDistance = 4;
// Batch rows whose probabilities and losses are computed as one span (2 × 32 rows of
// q floats stay in L2 up to q ~ 2,000).
constexpr int64_t kSpanRows = 32;

// The state of n instances, as raw rows.
struct StateRows {
  float* window;       // (n, n_t, q)
  int64_t* pushes;     // (n,)
  int64_t* last_epoch; // (n,)
  float* loss;         // (n, q)
  float* flip_average; // (n, q)
  float* flip_base;    // (n, q)
  int64_t n, n_t, q;
};

struct StepOptions {
  int64_t epoch;
  bool from_logits, per_epoch, flip_on_probability;
  float threshold, take, keep;  // take = λ2, keep = 1 - λ2
};

// Index range and repeats, before anything is written (rows are updated in parallel and
// must be distinct).
void check_indices(const int64_t* indices, int64_t b, int64_t n) {
  std::vector<int64_t> sorted(indices, indices + b);
  std::sort(sorted.begin(), sorted.end());
  if (b > 0) {
    TORCH_CHECK_INDEX(sorted.front() >= 0 && sorted.back() < n, "indices must lie in [0, ", n,
                      "), got values from ", sorted.front(), " to ", sorted.back());
  }
  TORCH_CHECK_VALUE(std::adjacent_find(sorted.begin(), sorted.end()) == sorted.end(),
                    "indices must not repeat an instance within one batch");
}

struct ValueFlags {
  int nan, outside, target_nan, not_binary;
};

// The flags of the value checks over the batch (in cache): bitwise ors, no branches, so
// GCC vectorises the loop.
D2ACE_SIMD_CLONES ValueFlags value_flags(const float* __restrict outputs, const float* __restrict targets,
                                         int64_t count) {
  ValueFlags f{0, 0, 0, 0};
  for (int64_t e = 0; e < count; ++e) {
    const float x = outputs[e], t = targets[e];
    f.nan |= x != x;
    f.outside |= (x < 0.0f) | (x > 1.0f) | (x != x);
    f.target_nan |= t != t;
    f.not_binary |= (t != 0.0f) & (t != 1.0f);
  }
  return f;
}

// NaN outputs, probabilities outside [0, 1], targets other than 0/1.
void check_values(const float* outputs, const float* targets, int64_t count, bool from_logits) {
  const ValueFlags f = value_flags(outputs, targets, count);
  TORCH_CHECK_VALUE(!f.nan, "outputs contain NaN (", from_logits ? "logits" : "probs",
                    "); the sampler state was not changed");
  TORCH_CHECK_VALUE(from_logits || !f.outside, "outputs must be probabilities in [0, 1] when kind='probs'");
  TORCH_CHECK_VALUE(!f.target_nan, "targets contain NaN; labels must be 0 or 1");
  TORCH_CHECK_VALUE(!f.not_binary, "targets must be 0/1 labels, found other values");
}

// Whether 0/1 targets (q,) differ from a row of bool labels, read as bytes 0/1.
D2ACE_SIMD_CLONES int row_differs(const float* __restrict targets, const std::uint8_t* __restrict labels,
                                  int64_t q) {
  int differ = 0;
  for (int64_t j = 0; j < q; ++j) differ |= static_cast<int>(targets[j] != 0.0f) ^ static_cast<int>(labels[j]);
  return differ;
}

// targets (b, q) 0/1 against the training labels (n, q) at the batch's instances.
void check_targets_match(const float* targets, const std::uint8_t* labels, const int64_t* indices, int64_t b,
                         int64_t q) {
  std::vector<int64_t> differ;
  for (int64_t r = 0; r < b && differ.size() < 5; ++r) {
    if (row_differs(targets + r * q, labels + indices[r] * q, q)) differ.push_back(indices[r]);
  }
  if (differ.empty()) return;
  std::ostringstream where;
  for (size_t k = 0; k < differ.size(); ++k) where << (k ? ", " : "") << differ[k];
  TORCH_CHECK_VALUE(false, "targets differ from the training labels the sampler was built with at instance(s) ",
                    where.str(),
                    ": the batch's rows are not the instances the sampler chose. Wrap the dataset in "
                    "d2ace_ext.IndexedDataset and pass the indices it yields to update(), and build the "
                    "sampler from the labels in the dataset's own order");
}

// The record loops: each calls one formula of pipeline_math.h, with the vectorisable
// functions where the formula evaluates exp or log (restrict pointers, one loop per mode,
// so GCC vectorises each). The batch's outputs and targets are contiguous, so a block of
// rows is recorded as one span: a per-row loop would leave q mod 16 values of every row
// to a scalar exp and log (at q = 101 as costly as the other 96).
D2ACE_SIMD_CLONES void logit_span(const float* __restrict logits, const float* __restrict targets, int64_t count,
                                  float* __restrict probability, float* __restrict loss) {
  for (int64_t e = 0; e < count; ++e) {
    const math::Record r = math::from_logit<fastmath::VectorMath>(logits[e], targets[e] != 0.0f);
    probability[e] = r.probability;
    loss[e] = r.loss;
  }
}

void probability_span(const float* probs, const float* targets, int64_t count, float* probability, float* loss) {
  for (int64_t e = 0; e < count; ++e) {
    const math::Record r = math::from_probability(probs[e], targets[e] != 0.0f);
    probability[e] = r.probability;
    loss[e] = r.loss;
  }
}

D2ACE_SIMD_CLONES void flip_average_on_probability(const float* __restrict now, const float* __restrict before,
                                                   const float* __restrict base, float take, float keep, int64_t q,
                                                   float* __restrict average) {
  for (int64_t j = 0; j < q; ++j) {
    average[j] = math::flip_average(math::flip_value<fastmath::VectorMath>(now[j], before[j], true, 0.0f), base[j],
                                    take, keep);
  }
}

D2ACE_SIMD_CLONES void flip_average_on_prediction(const float* __restrict now, const float* __restrict before,
                                                  const float* __restrict base, float take, float keep,
                                                  float threshold, int64_t q, float* __restrict average) {
  for (int64_t j = 0; j < q; ++j) {
    average[j] = math::flip_average(math::flip_value<fastmath::VectorMath>(now[j], before[j], false, threshold),
                                    base[j], take, keep);
  }
}

// The first record of an instance has nothing to flip against: f = 0.
D2ACE_SIMD_CLONES void flip_average_without_previous(const float* __restrict base, float take, float keep,
                                                     int64_t q, float* __restrict average) {
  for (int64_t j = 0; j < q; ++j) average[j] = math::flip_average(0.0f, base[j], take, keep);
}

void prefetch_lines(const void* start, int64_t bytes, bool for_write) {
  const char* p = static_cast<const char*>(start);
  for (int64_t offset = 0; offset < bytes; offset += 64) {
    if (for_write) {
      __builtin_prefetch(p + offset, 1);
    } else {
      __builtin_prefetch(p + offset, 0);
    }
  }
}

// One batch row's visit: its instance, whether it pushes a new window entry, its
// counter before the visit, and the slots it reads and writes.
struct Visit {
  int64_t instance;
  int64_t pushes;
  bool push;
  math::RecordSlots slots;
};

Visit visit_of(const StateRows& s, const StepOptions& opt, int64_t i) {
  Visit v;
  v.instance = i;
  v.pushes = s.pushes[i];
  v.push = !opt.per_epoch || s.last_epoch[i] != opt.epoch;
  v.slots = math::record_slots(v.pushes, v.push, s.n_t);
  return v;
}

// The rows a visit touches, into cache ahead of it.
void prefetch_rows(const StateRows& s, const StepOptions& opt, const Visit& v) {
  const int64_t i = v.instance, row_bytes = s.q * static_cast<int64_t>(sizeof(float));
  prefetch_lines(s.window + (i * s.n_t + v.slots.previous) * s.q, row_bytes, false);
  prefetch_lines(s.window + (i * s.n_t + v.slots.write) * s.q, row_bytes, true);
  prefetch_lines(s.loss + i * s.q, row_bytes, true);
  prefetch_lines(s.flip_average + i * s.q, row_bytes, true);
  if (opt.per_epoch) prefetch_lines(s.flip_base + i * s.q, row_bytes, true);
}

// One batch row into its instance's state, from its probability and loss (q,).
// visit_base (q,): scratch for f̄ before the update under visit windows, which push on
// every visit and so never need the state's flip_base (left untouched: one row of five
// less to move).
void record_row(const StateRows& s, const StepOptions& opt, const Visit& v, const float* probability,
                const float* loss, float* visit_base) {
  const int64_t q = s.q, i = v.instance;
  const float* previous = s.window + (i * s.n_t + v.slots.previous) * q;
  float* written = s.window + (i * s.n_t + v.slots.write) * q;
  float* average = s.flip_average + i * q;
  float* base = opt.per_epoch ? s.flip_base + i * q : visit_base;
  std::copy(loss, loss + q, s.loss + i * q);
  // Per-epoch windows: a second visit within the epoch overwrites its entry and redoes
  // the epoch's flip update from the average before it.
  if (v.push) std::copy(average, average + q, base);
  if (!v.slots.has_previous) {
    flip_average_without_previous(base, opt.take, opt.keep, q, average);
  } else if (opt.flip_on_probability) {
    flip_average_on_probability(probability, previous, base, opt.take, opt.keep, q, average);
  } else {
    flip_average_on_prediction(probability, previous, base, opt.take, opt.keep, opt.threshold, q, average);
  }
  std::copy(probability, probability + q, written);  // after `previous` was read
  s.pushes[i] = v.pushes + (v.push ? 1 : 0);
  s.last_epoch[i] = opt.epoch;
}

// Rows [begin, end) of the batch, kSpanRows at a time: the block's probabilities and
// losses as one span, then its rows into the state, the rows of the visit kRowDistance
// ahead prefetched.
void record_rows(const StateRows& s, const StepOptions& opt, const Visit* visits, const float* outputs,
                 const float* targets, int64_t begin, int64_t end) {
  const int64_t q = s.q;
  std::vector<float> probability(kSpanRows * q), loss(kSpanRows * q), visit_base(q);
  for (int64_t r = begin; r < std::min(end, begin + kRowDistance); ++r) prefetch_rows(s, opt, visits[r]);
  for (int64_t block = begin; block < end; block += kSpanRows) {
    const int64_t block_end = std::min(block + kSpanRows, end), count = (block_end - block) * q;
    if (opt.from_logits) {
      logit_span(outputs + block * q, targets + block * q, count, probability.data(), loss.data());
    } else {
      probability_span(outputs + block * q, targets + block * q, count, probability.data(), loss.data());
    }
    for (int64_t r = block; r < block_end; ++r) {
      if (r + kRowDistance < end) prefetch_rows(s, opt, visits[r + kRowDistance]);
      record_row(s, opt, visits[r], probability.data() + (r - block) * q, loss.data() + (r - block) * q,
                 visit_base.data());
    }
  }
}

}  // namespace

void record_step_cpu(const at::Tensor& window, const at::Tensor& pushes, const at::Tensor& last_epoch,
                     const at::Tensor& loss, const at::Tensor& flip_average, const at::Tensor& flip_base,
                     const at::Tensor& index_errors, const at::Tensor& indices, const at::Tensor& outputs,
                     const at::Tensor& targets, int64_t epoch, bool from_logits, bool per_epoch,
                     bool flip_on_probability, double flip_threshold, double lambda2,
                     const std::optional<at::Tensor>& labels) {
  check_record_step_inputs(window, pushes, last_epoch, loss, flip_average, flip_base, index_errors, indices,
                           outputs, targets, flip_threshold, lambda2, labels);
  TORCH_CHECK_VALUE(window.device().is_cpu(), "record_step_cpu: tensors must be on the CPU");
  const int64_t n = window.size(0), n_t = window.size(1), q = window.size(2);
  const at::Tensor indices_c = indices.contiguous(), outputs_c = outputs.contiguous(),
                   targets_c = targets.contiguous();
  const int64_t b = indices_c.size(0);
  const int64_t* rows = indices_c.const_data_ptr<int64_t>();
  const float* outputs_p = outputs_c.const_data_ptr<float>();
  const float* targets_p = targets_c.const_data_ptr<float>();

  const StateRows state{window.mutable_data_ptr<float>(), pushes.mutable_data_ptr<int64_t>(),
                        last_epoch.mutable_data_ptr<int64_t>(), loss.mutable_data_ptr<float>(),
                        flip_average.mutable_data_ptr<float>(), flip_base.mutable_data_ptr<float>(),
                        n, n_t, q};
  const StepOptions options{epoch, from_logits, per_epoch, flip_on_probability, static_cast<float>(flip_threshold),
                            static_cast<float>(lambda2), static_cast<float>(1.0 - lambda2)};

  // The checks (index_errors is for the CUDA kernel, which cannot raise). While they run
  // on the batch, the instances' counters and label rows are fetched.
  check_indices(rows, b, n);
  for (int64_t r = 0; r < b; ++r) {
    __builtin_prefetch(state.pushes + rows[r]);
    __builtin_prefetch(state.last_epoch + rows[r]);
  }
  at::Tensor labels_c;
  const std::uint8_t* labels_p = nullptr;  // bool is one byte holding 0 or 1
  if (labels.has_value()) {
    labels_c = labels->contiguous();
    labels_p = reinterpret_cast<const std::uint8_t*>(labels_c.const_data_ptr<bool>());
    for (int64_t r = 0; r < b; ++r) prefetch_lines(labels_p + rows[r] * q, q, false);
  }
  check_values(outputs_p, targets_p, b * q, from_logits);
  if (labels_p != nullptr) check_targets_match(targets_p, labels_p, rows, b, q);

  // Each row's slots from its counters (distinct instances: no row changes another's),
  // so the row loop can prefetch a visit's rows without waiting on its counters.
  std::vector<Visit> visits(b);
  for (int64_t r = 0; r < b; ++r) visits[r] = visit_of(state, options, rows[r]);
  const int64_t grain = std::max<int64_t>(1, kSerialBatchValues / std::max<int64_t>(q, 1));
  at::parallel_for(0, b, grain, [&](int64_t begin, int64_t end) {
    record_rows(state, options, visits.data(), outputs_p, targets_p, begin, end);
  });
}

}  // namespace d2ace_ext
