// float32 CPU kernels for the layers where Paddle 3.3's eager CPU kernels are slowest in BERT training:
// masked softmax, layer norm, erf GELU and dropout, each with its gradient; and inference-only fusions, up to
// SqueezeBERT's grouped 1x1 convolutions and attention as sgemm tiles. Rows or tiles are split over OpenMP
// threads; inner loops are written for the compiler to vectorise. See paddleport/models/kernels/__init__.py.

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <vector>

#include "paddle/extension.h"

namespace {

void CheckFloat32Cpu(const paddle::Tensor& x, const char* op) {
  PD_CHECK(x.is_cpu(), op, ": expects a CPU tensor");
  PD_CHECK(x.dtype() == paddle::DataType::FLOAT32, op, ": expects float32");
}

// Every kernel reads its inputs as dense row-major arrays (data<float>() + index arithmetic); a strided view
// (a transpose or slice while FLAGS_use_stride_kernel is on) is copied to a dense tensor first.
paddle::Tensor Dense(const paddle::Tensor& x) { return x.is_contiguous() ? x : x.contiguous(); }

int64_t LastDim(const paddle::Tensor& x) { return x.shape().back(); }

constexpr float kInvSqrt2 = 0.70710678118654752f;
constexpr float kInvSqrt2Pi = 0.39894228040143268f;

// exp for x <= 88 by range reduction x = n ln2 + r and a degree-6 polynomial (Cephes expf, ~1 ulp), written
// so that loops calling it vectorise (std::exp stays scalar without -ffast-math).
inline float Exp(float input) {
  const float x = std::max(-87.3f, std::min(88.3f, input));
  const float n = std::nearbyint(x * 1.44269504088896341f);
  const float r = (x - n * 0.693359375f) + n * 2.12194440e-4f;
  float poly = 1.9875691500e-4f;
  poly = poly * r + 1.3981999507e-3f;
  poly = poly * r + 8.3334519073e-3f;
  poly = poly * r + 4.1665795894e-2f;
  poly = poly * r + 1.6666665459e-1f;
  poly = poly * r + 5.0000001201e-1f;
  poly = poly * r * r + r + 1.f;
  const int32_t bits = (static_cast<int32_t>(n) + 127) << 23;
  float scale;
  std::memcpy(&scale, &bits, sizeof(scale));
  // below the clamp, 0 as std::exp gives: a ~1e-38 there would make masked probabilities denormal, and
  // denormals slow every matmul that reads them by 10-30x
  return input < -87.3f ? 0.f : poly * scale;
}

// erf as a clamped rational polynomial (the float approximation Eigen uses, max error ~2e-7), so the loops
// vectorise: glibc's erff is scalar and made this kernel slower than Paddle's.
inline float Erf(float x) {
  x = std::min(4.f, std::max(-4.f, x));
  const float x2 = x * x;
  float alpha = -2.72614225801306e-10f;
  alpha = alpha * x2 + 2.77068142495902e-08f;
  alpha = alpha * x2 + -2.10102402082508e-06f;
  alpha = alpha * x2 + -5.69250639462346e-05f;
  alpha = alpha * x2 + -7.34990630326855e-04f;
  alpha = alpha * x2 + -2.95459980854025e-03f;
  alpha = alpha * x2 + -1.60960333262415e-02f;
  float beta = -1.45660718464996e-05f;
  beta = beta * x2 + -2.13374055278905e-04f;
  beta = beta * x2 + -1.68282697438203e-03f;
  beta = beta * x2 + -7.37332916720468e-03f;
  beta = beta * x2 + -1.42647390514189e-02f;
  return x * alpha / beta;
}

// GELU, erf form: x * Phi(x)
inline float Gelu(float x) { return 0.5f * x * (1.f + Erf(x * kInvSqrt2)); }

// sums[j] = sum over threads of partial[thread * size + j]
void SumPartials(const std::vector<float>& partial, int threads, int64_t size, float* sums) {
  for (int64_t j = 0; j < size; ++j) {
    float total = 0.f;
    for (int t = 0; t < threads; ++t) total += partial[static_cast<size_t>(t) * size + j];
    sums[j] = total;
  }
}

// The softmax of a row of `count` scores whose maximum is `largest`, in place: exp(x - largest) / their sum.
inline void NormaliseExponentials(float* row, int64_t count, float largest) {
  float total = 0.f;
#pragma omp simd reduction(+ : total)
  for (int64_t j = 0; j < count; ++j) {
    row[j] = Exp(row[j] - largest);
    total += row[j];
  }
  const float inverse = 1.f / total;
#pragma omp simd
  for (int64_t j = 0; j < count; ++j) row[j] *= inverse;
}

// ---- softmax(x * scale + mask) over the last axis; mask is additive, [batch, 1, 1, keys] ----------------

// The largest of `count` values, as kLanes running maxima: GCC leaves a max reduction scalar even under
// `omp simd reduction(max)` (it was 4x slower than the rest of the softmax), but vectorises an element-wise max.
constexpr int64_t kLanes = 16;

inline float Largest(const float* values, int64_t count) {
  float lanes[kLanes];
  std::fill(lanes, lanes + kLanes, -INFINITY);
  int64_t j = 0;
  for (; j + kLanes <= count; j += kLanes)
    for (int64_t lane = 0; lane < kLanes; ++lane) lanes[lane] = std::max(lanes[lane], values[j + lane]);
  float largest = *std::max_element(lanes, lanes + kLanes);
  for (; j < count; ++j) largest = std::max(largest, values[j]);
  return largest;
}

// target[j] = softmax(source * scale + mask_row)[j] over one row of `keys` scores; `target` may be `source`.
// `scaled`, when given, receives source * scale + mask_row (the scores before the softmax).
inline void SoftmaxRow(const float* source, const float* mask_row, float scale, int64_t keys, float* target,
                       float* scaled = nullptr) {
#pragma omp simd
  for (int64_t j = 0; j < keys; ++j) target[j] = source[j] * scale + mask_row[j];
  if (scaled != nullptr) std::copy(target, target + keys, scaled);
  NormaliseExponentials(target, keys, Largest(target, keys));
}

std::vector<paddle::Tensor> SoftmaxMaskForward(const paddle::Tensor& x_arg, const paddle::Tensor& mask_arg,
                                               float scale) {
  const paddle::Tensor x = Dense(x_arg);
  const paddle::Tensor mask = Dense(mask_arg);
  CheckFloat32Cpu(x, "pp_softmax_mask");
  CheckFloat32Cpu(mask, "pp_softmax_mask");
  const auto& shape = x.shape();
  PD_CHECK(shape.size() == 4, "pp_softmax_mask: expects [batch, heads, queries, keys] scores");
  const int64_t keys = shape[3];
  const int64_t rows_per_batch = shape[1] * shape[2];
  const int64_t rows = shape[0] * rows_per_batch;
  PD_CHECK(mask.numel() == shape[0] * keys, "pp_softmax_mask: mask must hold batch x keys values");
  auto out = paddle::empty_like(x);
  const float* in = x.data<float>();
  const float* add = mask.data<float>();
  float* result = out.data<float>();
#pragma omp parallel for schedule(static)
  for (int64_t row = 0; row < rows; ++row)
    SoftmaxRow(in + row * keys, add + (row / rows_per_batch) * keys, scale, keys, result + row * keys);
  return {out};
}

std::vector<paddle::Tensor> SoftmaxMaskBackward(const paddle::Tensor& out_arg, const paddle::Tensor& grad_out_arg,
                                                float scale) {
  const paddle::Tensor out = Dense(out_arg);
  const paddle::Tensor grad_out = Dense(grad_out_arg);
  const int64_t keys = LastDim(out);
  const int64_t rows = out.numel() / keys;
  auto grad_x = paddle::empty_like(out);
  const float* probs = out.data<float>();
  const float* grad = grad_out.data<float>();
  float* result = grad_x.data<float>();
#pragma omp parallel for schedule(static)
  for (int64_t row = 0; row < rows; ++row) {
    const float* p = probs + row * keys;
    const float* g = grad + row * keys;
    float* target = result + row * keys;
    float dot = 0.f;
#pragma omp simd reduction(+ : dot)
    for (int64_t j = 0; j < keys; ++j) dot += p[j] * g[j];
#pragma omp simd
    for (int64_t j = 0; j < keys; ++j) target[j] = scale * p[j] * (g[j] - dot);
  }
  return {grad_x};
}

// ---- layer norm over the last axis -------------------------------------------------------------------

// One row of `width` values normalised by its mean and variance, then scaled by `w` and shifted by `b`;
// `target` may be `source`. Returns the row's mean and 1/std (kept for the backward).
inline void NormaliseRow(const float* source, float* target, const float* w, const float* b, int64_t width,
                         float epsilon, float* row_mean_out, float* row_inv_std_out) {
  double total = 0.0;
#pragma omp simd reduction(+ : total)
  for (int64_t j = 0; j < width; ++j) total += source[j];
  const float row_mean = static_cast<float>(total / width);
  double squares = 0.0;
#pragma omp simd reduction(+ : squares)
  for (int64_t j = 0; j < width; ++j) {
    const float centred = source[j] - row_mean;
    squares += centred * centred;
  }
  const float row_inv_std = 1.f / std::sqrt(static_cast<float>(squares / width) + epsilon);
#pragma omp simd
  for (int64_t j = 0; j < width; ++j) target[j] = (source[j] - row_mean) * row_inv_std * w[j] + b[j];
  *row_mean_out = row_mean;
  *row_inv_std_out = row_inv_std;
}

std::vector<paddle::Tensor> LayerNormForward(const paddle::Tensor& x_arg, const paddle::Tensor& weight_arg,
                                             const paddle::Tensor& bias_arg, float epsilon) {
  const paddle::Tensor x = Dense(x_arg);
  const paddle::Tensor weight = Dense(weight_arg);
  const paddle::Tensor bias = Dense(bias_arg);
  CheckFloat32Cpu(x, "pp_layer_norm");
  const int64_t width = LastDim(x);
  const int64_t rows = x.numel() / width;
  PD_CHECK(weight.numel() == width && bias.numel() == width, "pp_layer_norm: weight/bias size != last dim");
  auto out = paddle::empty_like(x);
  auto mean = paddle::empty({rows}, paddle::DataType::FLOAT32, x.place());
  auto inv_std = paddle::empty({rows}, paddle::DataType::FLOAT32, x.place());
  const float* in = x.data<float>();
  const float* w = weight.data<float>();
  const float* b = bias.data<float>();
  float* result = out.data<float>();
  float* means = mean.data<float>();
  float* inv_stds = inv_std.data<float>();
#pragma omp parallel for schedule(static)
  for (int64_t row = 0; row < rows; ++row)
    NormaliseRow(in + row * width, result + row * width, w, b, width, epsilon, means + row, inv_stds + row);
  return {out, mean, inv_std};
}

std::vector<paddle::Tensor> LayerNormBackward(const paddle::Tensor& x_arg, const paddle::Tensor& weight_arg,
                                              const paddle::Tensor& mean_arg, const paddle::Tensor& inv_std_arg,
                                              const paddle::Tensor& grad_out_arg) {
  const paddle::Tensor x = Dense(x_arg);
  const paddle::Tensor weight = Dense(weight_arg);
  const paddle::Tensor mean = Dense(mean_arg);
  const paddle::Tensor inv_std = Dense(inv_std_arg);
  const paddle::Tensor grad_out = Dense(grad_out_arg);
  const int64_t width = LastDim(x);
  const int64_t rows = x.numel() / width;
  auto grad_x = paddle::empty_like(x);
  const float* in = x.data<float>();
  const float* w = weight.data<float>();
  const float* means = mean.data<float>();
  const float* inv_stds = inv_std.data<float>();
  const float* grad = grad_out.data<float>();
  float* result = grad_x.data<float>();
  const int threads = omp_get_max_threads();
  // per-thread partial column sums for the weight and bias gradients
  std::vector<float> partial_weight(static_cast<size_t>(threads) * width, 0.f);
  std::vector<float> partial_bias(static_cast<size_t>(threads) * width, 0.f);
#pragma omp parallel num_threads(threads)
  {
    float* thread_weight = partial_weight.data() + static_cast<size_t>(omp_get_thread_num()) * width;
    float* thread_bias = partial_bias.data() + static_cast<size_t>(omp_get_thread_num()) * width;
#pragma omp for schedule(static)
    for (int64_t row = 0; row < rows; ++row) {
      const float* source = in + row * width;
      const float* g = grad + row * width;
      float* target = result + row * width;
      const float row_mean = means[row];
      const float row_inv_std = inv_stds[row];
      float sum_grad = 0.f, sum_grad_normalised = 0.f;
#pragma omp simd reduction(+ : sum_grad, sum_grad_normalised)
      for (int64_t j = 0; j < width; ++j) {
        const float normalised = (source[j] - row_mean) * row_inv_std;
        const float weighted = g[j] * w[j];
        sum_grad += weighted;
        sum_grad_normalised += weighted * normalised;
        thread_weight[j] += g[j] * normalised;
        thread_bias[j] += g[j];
      }
      const float mean_grad = sum_grad / width;
      const float mean_grad_normalised = sum_grad_normalised / width;
#pragma omp simd
      for (int64_t j = 0; j < width; ++j) {
        const float normalised = (source[j] - row_mean) * row_inv_std;
        target[j] = row_inv_std * (g[j] * w[j] - mean_grad - normalised * mean_grad_normalised);
      }
    }
  }
  auto grad_weight = paddle::empty({width}, paddle::DataType::FLOAT32, x.place());
  auto grad_bias = paddle::empty({width}, paddle::DataType::FLOAT32, x.place());
  SumPartials(partial_weight, threads, width, grad_weight.data<float>());
  SumPartials(partial_bias, threads, width, grad_bias.data<float>());
  return {grad_x, grad_weight, grad_bias};
}

// ---- inference-only fusions (no gradient): a Linear's bias folded into what follows it ------------------

// LayerNorm(x + bias + residual) over the last axis: BERT's "output" blocks after their dense matmul.
std::vector<paddle::Tensor> BiasResidualLayerNormForward(const paddle::Tensor& x_arg, const paddle::Tensor& bias_arg,
                                                         const paddle::Tensor& residual_arg,
                                                         const paddle::Tensor& weight_arg,
                                                         const paddle::Tensor& ln_bias_arg, float epsilon) {
  const paddle::Tensor x = Dense(x_arg);
  const paddle::Tensor bias = Dense(bias_arg);
  const paddle::Tensor residual = Dense(residual_arg);
  const paddle::Tensor weight = Dense(weight_arg);
  const paddle::Tensor ln_bias = Dense(ln_bias_arg);
  CheckFloat32Cpu(x, "pp_bias_residual_layer_norm");
  const int64_t width = LastDim(x);
  const int64_t rows = x.numel() / width;
  PD_CHECK(residual.numel() == x.numel(), "pp_bias_residual_layer_norm: residual shape != input shape");
  auto out = paddle::empty_like(x);
  const float* in = x.data<float>();
  const float* b = bias.data<float>();
  const float* skip = residual.data<float>();
  const float* w = weight.data<float>();
  const float* shift = ln_bias.data<float>();
  float* result = out.data<float>();
#pragma omp parallel for schedule(static)
  for (int64_t row = 0; row < rows; ++row) {
    float* target = result + row * width;
#pragma omp simd
    for (int64_t j = 0; j < width; ++j) target[j] = in[row * width + j] + b[j] + skip[row * width + j];
    float row_mean, row_inv_std;  // not needed: this fusion has no backward
    NormaliseRow(target, target, w, shift, width, epsilon, &row_mean, &row_inv_std);
  }
  return {out};
}

// GELU(x + bias): BERT's intermediate block after its dense matmul.
std::vector<paddle::Tensor> BiasGeluForward(const paddle::Tensor& x_arg, const paddle::Tensor& bias_arg) {
  const paddle::Tensor x = Dense(x_arg);
  const paddle::Tensor bias = Dense(bias_arg);
  CheckFloat32Cpu(x, "pp_bias_gelu");
  const int64_t width = LastDim(x);
  const int64_t rows = x.numel() / width;
  PD_CHECK(bias.numel() == width, "pp_bias_gelu: bias size != last dim");
  auto out = paddle::empty_like(x);
  const float* in = x.data<float>();
  const float* b = bias.data<float>();
  float* result = out.data<float>();
#pragma omp parallel for schedule(static)
  for (int64_t row = 0; row < rows; ++row) {
#pragma omp simd
    for (int64_t j = 0; j < width; ++j) {
      result[row * width + j] = Gelu(in[row * width + j] + b[j]);
    }
  }
  return {out};
}

// x + bias split into heads: [batch, seq, heads * head_size] -> [batch, heads, seq, head_size], dense. The query,
// key and value projections' bias add and head transpose as one pass after their matmuls (no autograd).
std::vector<paddle::Tensor> BiasSplitHeadsForward(const paddle::Tensor& x_arg, const paddle::Tensor& bias_arg,
                                                  int heads) {
  const paddle::Tensor x = Dense(x_arg);
  const paddle::Tensor bias = Dense(bias_arg);
  CheckFloat32Cpu(x, "pp_bias_split_heads");
  PD_CHECK(x.shape().size() == 3, "pp_bias_split_heads: x must be [batch, seq, hidden]");
  const int64_t batch = x.shape()[0], seq = x.shape()[1], width = x.shape()[2];
  PD_CHECK(heads > 0 && width % heads == 0, "pp_bias_split_heads: hidden size not divisible by heads");
  PD_CHECK(bias.numel() == width, "pp_bias_split_heads: bias size != last dim");
  const int64_t head_size = width / heads;
  auto out = paddle::empty({batch, heads, seq, head_size}, x.dtype(), x.place());
  const float* in = x.data<float>();
  const float* b = bias.data<float>();
  float* result = out.data<float>();
#pragma omp parallel for schedule(static)
  for (int64_t row = 0; row < batch * seq; ++row) {
    const int64_t n = row / seq, position = row % seq;
    const float* source = in + row * width;
    for (int64_t h = 0; h < heads; ++h) {
      float* target = result + ((n * heads + h) * seq + position) * head_size;
      const float* source_head = source + h * head_size;
      const float* bias_head = b + h * head_size;
#pragma omp simd
      for (int64_t j = 0; j < head_size; ++j) target[j] = source_head[j] + bias_head[j];
    }
  }
  return {out};
}

// ---- channel-first variants for SqueezeBERT's [batch, channels, width] (NCW) tensors --------------------
// Layer norm over the channels of every (batch, position) column, and the per-channel bias of its 1x1
// convolutions; the inner loops run along the contiguous width, so no transposes are needed.

struct NcwShape {
  int64_t batch, channels, width;
};

NcwShape NcwOf(const paddle::Tensor& x, const char* op) {
  const auto& shape = x.shape();
  PD_CHECK(shape.size() == 3, op, ": expects a [batch, channels, width] tensor");
  return {shape[0], shape[1], shape[2]};
}

// Columns [begin, end) of one [channels, width] plane normalised over the channels (two passes for the statistics,
// in double, then one to write); the unit of work of the channel layer norms, so that a batch of one still uses
// every thread (work is split by (batch, block of columns), not by batch alone).
constexpr int64_t kColumnBlock = 32;

void NormaliseColumns(const float* source, float* target, const float* w, const float* b, int64_t channels,
                      int64_t width, int64_t begin, int64_t end, float epsilon, float* column_mean,
                      float* column_inv_std) {
  const int64_t count = end - begin;
  double totals[kColumnBlock] = {0.0}, squares[kColumnBlock] = {0.0};
  for (int64_t c = 0; c < channels; ++c)
#pragma omp simd
    for (int64_t j = 0; j < count; ++j) totals[j] += source[c * width + begin + j];
  for (int64_t j = 0; j < count; ++j) column_mean[begin + j] = static_cast<float>(totals[j] / channels);
  for (int64_t c = 0; c < channels; ++c)
#pragma omp simd
    for (int64_t j = 0; j < count; ++j) {
      const float centred = source[c * width + begin + j] - column_mean[begin + j];
      squares[j] += centred * centred;
    }
  for (int64_t j = 0; j < count; ++j)
    column_inv_std[begin + j] = 1.f / std::sqrt(static_cast<float>(squares[j] / channels) + epsilon);
  for (int64_t c = 0; c < channels; ++c)
#pragma omp simd
    for (int64_t j = begin; j < end; ++j)
      target[c * width + j] = (source[c * width + j] - column_mean[j]) * column_inv_std[j] * w[c] + b[c];
}

int64_t ColumnBlocks(int64_t width) { return (width + kColumnBlock - 1) / kColumnBlock; }

std::vector<paddle::Tensor> ChannelLayerNormForward(const paddle::Tensor& x_arg, const paddle::Tensor& weight_arg,
                                                    const paddle::Tensor& bias_arg, float epsilon) {
  const paddle::Tensor x = Dense(x_arg);
  const paddle::Tensor weight = Dense(weight_arg);
  const paddle::Tensor bias = Dense(bias_arg);
  CheckFloat32Cpu(x, "pp_channel_layer_norm");
  const NcwShape dims = NcwOf(x, "pp_channel_layer_norm");
  PD_CHECK(weight.numel() == dims.channels && bias.numel() == dims.channels,
           "pp_channel_layer_norm: weight/bias size != channels");
  auto out = paddle::empty_like(x);
  auto mean = paddle::empty({dims.batch, dims.width}, paddle::DataType::FLOAT32, x.place());
  auto inv_std = paddle::empty({dims.batch, dims.width}, paddle::DataType::FLOAT32, x.place());
  const float* in = x.data<float>();
  float* result = out.data<float>();
  const int64_t width = dims.width, channels = dims.channels, blocks = ColumnBlocks(width);
#pragma omp parallel for schedule(static)
  for (int64_t task = 0; task < dims.batch * blocks; ++task) {
    const int64_t n = task / blocks, begin = (task % blocks) * kColumnBlock;
    NormaliseColumns(in + n * channels * width, result + n * channels * width, weight.data<float>(),
                     bias.data<float>(), channels, width, begin, std::min(begin + kColumnBlock, width), epsilon,
                     mean.data<float>() + n * width, inv_std.data<float>() + n * width);
  }
  return {out, mean, inv_std};
}

std::vector<paddle::Tensor> ChannelLayerNormBackward(const paddle::Tensor& x_arg, const paddle::Tensor& weight_arg,
                                                     const paddle::Tensor& mean_arg, const paddle::Tensor& inv_std_arg,
                                                     const paddle::Tensor& grad_out_arg) {
  const paddle::Tensor x = Dense(x_arg);
  const paddle::Tensor weight = Dense(weight_arg);
  const paddle::Tensor mean = Dense(mean_arg);
  const paddle::Tensor inv_std = Dense(inv_std_arg);
  const paddle::Tensor grad_out = Dense(grad_out_arg);
  const NcwShape dims = NcwOf(x, "pp_channel_layer_norm_grad");
  const int64_t width = dims.width, channels = dims.channels;
  auto grad_x = paddle::empty_like(x);
  auto grad_weight = paddle::empty({channels}, paddle::DataType::FLOAT32, x.place());
  auto grad_bias = paddle::empty({channels}, paddle::DataType::FLOAT32, x.place());
  const float* in = x.data<float>();
  const float* w = weight.data<float>();
  const float* means = mean.data<float>();
  const float* inv_stds = inv_std.data<float>();
  const float* grad = grad_out.data<float>();
  float* result = grad_x.data<float>();
  const int threads = omp_get_max_threads();
  std::vector<float> partial_weight(static_cast<size_t>(threads) * channels, 0.f);
  std::vector<float> partial_bias(static_cast<size_t>(threads) * channels, 0.f);
#pragma omp parallel num_threads(threads)
  {
    float* thread_weight = partial_weight.data() + static_cast<size_t>(omp_get_thread_num()) * channels;
    float* thread_bias = partial_bias.data() + static_cast<size_t>(omp_get_thread_num()) * channels;
    std::vector<float> mean_grad(width), mean_grad_normalised(width);
#pragma omp for schedule(static)
    for (int64_t n = 0; n < dims.batch; ++n) {
      const float* source = in + n * channels * width;
      const float* g = grad + n * channels * width;
      float* target = result + n * channels * width;
      const float* column_mean = means + n * width;
      const float* column_inv_std = inv_stds + n * width;
      std::fill(mean_grad.begin(), mean_grad.end(), 0.f);
      std::fill(mean_grad_normalised.begin(), mean_grad_normalised.end(), 0.f);
      for (int64_t c = 0; c < channels; ++c) {
        float weight_sum = 0.f, bias_sum = 0.f;
#pragma omp simd reduction(+ : weight_sum, bias_sum)
        for (int64_t j = 0; j < width; ++j) {
          const float normalised = (source[c * width + j] - column_mean[j]) * column_inv_std[j];
          const float weighted = g[c * width + j] * w[c];
          mean_grad[j] += weighted;
          mean_grad_normalised[j] += weighted * normalised;
          weight_sum += g[c * width + j] * normalised;
          bias_sum += g[c * width + j];
        }
        thread_weight[c] += weight_sum;
        thread_bias[c] += bias_sum;
      }
      for (int64_t j = 0; j < width; ++j) {
        mean_grad[j] /= channels;
        mean_grad_normalised[j] /= channels;
      }
      for (int64_t c = 0; c < channels; ++c)
#pragma omp simd
        for (int64_t j = 0; j < width; ++j) {
          const float normalised = (source[c * width + j] - column_mean[j]) * column_inv_std[j];
          target[c * width + j] =
              column_inv_std[j] * (g[c * width + j] * w[c] - mean_grad[j] - normalised * mean_grad_normalised[j]);
        }
    }
  }
  SumPartials(partial_weight, threads, channels, grad_weight.data<float>());
  SumPartials(partial_bias, threads, channels, grad_bias.data<float>());
  return {grad_x, grad_weight, grad_bias};
}

// target = op(source + bias[c]) over rows [first, last) and columns [begin, end) of a [channels, width] plane
// (`target` may be `source`): the channel bias, and the conv kernels' bias (+ GELU) below.
template <typename ElementOp>
inline void ChannelBiasRows(const float* source, float* target, const float* bias, int64_t width, int64_t first,
                            int64_t last, int64_t begin, int64_t end, ElementOp op) {
  for (int64_t c = first; c < last; ++c) {
    const float shift = bias[c];
#pragma omp simd
    for (int64_t j = begin; j < end; ++j) target[c * width + j] = op(source[c * width + j] + shift);
  }
}

// element operations as lambdas (not function pointers), so that the loops above inline and vectorise them
constexpr auto kIdentity = [](float value) { return value; };
constexpr auto kGelu = [](float value) { return Gelu(value); };

std::vector<paddle::Tensor> ChannelBiasForward(const paddle::Tensor& x_arg, const paddle::Tensor& bias_arg) {
  const paddle::Tensor x = Dense(x_arg);
  const paddle::Tensor bias = Dense(bias_arg);
  CheckFloat32Cpu(x, "pp_channel_bias");
  const NcwShape dims = NcwOf(x, "pp_channel_bias");
  PD_CHECK(bias.numel() == dims.channels, "pp_channel_bias: bias size != channels");
  auto out = paddle::empty_like(x);
  const float* in = x.data<float>();
  float* result = out.data<float>();
  const int64_t plane_size = dims.channels * dims.width;
#pragma omp parallel for schedule(static)
  for (int64_t plane = 0; plane < dims.batch * dims.channels; ++plane) {
    const int64_t n = plane / dims.channels, c = plane % dims.channels;
    ChannelBiasRows(in + n * plane_size, result + n * plane_size, bias.data<float>(), dims.width, c, c + 1, 0,
                    dims.width, kIdentity);
  }
  return {out};
}

std::vector<paddle::Tensor> ChannelBiasBackward(const paddle::Tensor& grad_out_arg) {
  const paddle::Tensor grad_out = Dense(grad_out_arg);
  const NcwShape dims = NcwOf(grad_out, "pp_channel_bias_grad");
  auto grad_bias = paddle::empty({dims.channels}, paddle::DataType::FLOAT32, grad_out.place());
  const float* grad = grad_out.data<float>();
  float* sums = grad_bias.data<float>();
  const int64_t width = dims.width;
#pragma omp parallel for schedule(static)
  for (int64_t c = 0; c < dims.channels; ++c) {
    float total = 0.f;
    for (int64_t n = 0; n < dims.batch; ++n) {
      const float* row = grad + (n * dims.channels + c) * width;
#pragma omp simd reduction(+ : total)
      for (int64_t j = 0; j < width; ++j) total += row[j];
    }
    sums[c] = total;
  }
  return {paddle::experimental::copy_to(grad_out, grad_out.place(), false), grad_bias};
}

// ---- SqueezeBERT's grouped 1x1 convolutions and attention as sgemm tiles, inference only ------------------
// Each thread computes whole tiles (a sequence, or a block of its positions, or one attention head) with
// single-threaded sgemm calls of Paddle's own MKL and finishes each tile while it is still in its cache: the conv
// bias, with GELU or with the residual add and channel layer norm; for attention, the masked softmax between the
// head's two matmuls. Paddle's broadcast matmul followed by a separate pass for each of these wrote every activation
// out to memory and read it back.

extern "C" {  // MKL's CBLAS (libmklml_intel.so, LP64), which Paddle ships without its headers
void cblas_sgemm(int layout, int trans_a, int trans_b, int m, int n, int k, float alpha, const float* a, int lda,
                 const float* b, int ldb, float beta, float* c, int ldc);
int MKL_Set_Num_Threads_Local(int threads);
}
constexpr int kCblasRowMajor = 101, kCblasNoTrans = 111, kCblasTrans = 112;

// c[m x n] = op(a) op(b), row-major
void Sgemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, const float* a, int64_t lda, const float* b,
           int64_t ldb, float* c, int64_t ldc) {
  cblas_sgemm(kCblasRowMajor, trans_a ? kCblasTrans : kCblasNoTrans, trans_b ? kCblasTrans : kCblasNoTrans,
              static_cast<int>(m), static_cast<int>(n), static_cast<int>(k), 1.f, a, static_cast<int>(lda), b,
              static_cast<int>(ldb), 0.f, c, static_cast<int>(ldc));
}

// Inside an OpenMP region: this thread's MKL calls run on this thread alone (the region's threads are the
// parallelism); the thread's previous MKL setting comes back at the end of the scope.
class SingleThreadedMkl {
 public:
  SingleThreadedMkl() : saved_(MKL_Set_Num_Threads_Local(1)) {}
  ~SingleThreadedMkl() { MKL_Set_Num_Threads_Local(saved_); }

 private:
  int saved_;
};

// Tiles of [batch, channels, width] data: tile t is sequence t / per_sequence, columns [Begin(t), End(t)). Whole
// sequences when there are two per thread or more, else blocks of columns (multiples of 16), so that a batch of one
// still uses every thread.
struct ColumnTiles {
  int64_t width, per_sequence, block;
  ColumnTiles(int64_t batch, int64_t width_arg, int threads) : width(width_arg) {
    const int64_t wanted = (2 * threads + batch - 1) / batch;
    const int64_t blocks = std::max<int64_t>(1, std::min(wanted, width / 16));
    block = ((width + blocks - 1) / blocks + 15) / 16 * 16;
    per_sequence = (width + block - 1) / block;
  }
  int64_t Sequence(int64_t tile) const { return tile / per_sequence; }
  int64_t Begin(int64_t tile) const { return (tile % per_sequence) * block; }
  int64_t End(int64_t tile) const { return std::min(Begin(tile) + block, width); }
};

// out[n] = weight (grouped) @ x[n] for each tile of columns, then finish_group(out plane, first channel, end channel,
// begin, end) after each group's matmul and finish_tile(out plane, n, begin, end, scratch of 2 x width floats)
// after all of them. weight: the Conv1D's [out_channels, in_channels / groups, 1].
template <typename FinishGroup, typename FinishTile>
paddle::Tensor GroupedPointwiseConv(const paddle::Tensor& x_arg, const paddle::Tensor& weight_arg, int64_t groups,
                                    const char* op_name, FinishGroup finish_group, FinishTile finish_tile) {
  const paddle::Tensor x = Dense(x_arg);
  const paddle::Tensor weight = Dense(weight_arg);
  CheckFloat32Cpu(x, op_name);
  CheckFloat32Cpu(weight, op_name);
  const NcwShape dims = NcwOf(x, op_name);
  PD_CHECK(groups >= 1 && dims.channels % groups == 0, op_name, ": input channels not divisible by groups");
  const int64_t in_per_group = dims.channels / groups, out_channels = weight.shape()[0];
  PD_CHECK(out_channels % groups == 0 && weight.numel() == out_channels * in_per_group, op_name,
           ": weight must be [out_channels, in_channels / groups, 1]");
  const int64_t out_per_group = out_channels / groups, width = dims.width;
  auto out = paddle::empty({dims.batch, out_channels, width}, paddle::DataType::FLOAT32, x.place());
  const float* in = x.data<float>();
  const float* w = weight.data<float>();
  float* result = out.data<float>();
  const ColumnTiles tiles(dims.batch, width, omp_get_max_threads());
#pragma omp parallel
  {
    SingleThreadedMkl single_threaded;
    std::vector<float> scratch(2 * width);
#pragma omp for schedule(static)
    for (int64_t tile = 0; tile < dims.batch * tiles.per_sequence; ++tile) {
      const int64_t n = tiles.Sequence(tile), begin = tiles.Begin(tile), end = tiles.End(tile);
      float* plane = result + n * out_channels * width;
      for (int64_t g = 0; g < groups; ++g) {
        Sgemm(false, false, out_per_group, end - begin, in_per_group, w + g * out_per_group * in_per_group,
              in_per_group, in + (n * dims.channels + g * in_per_group) * width + begin, width,
              plane + g * out_per_group * width + begin, width);
        finish_group(plane, g * out_per_group, (g + 1) * out_per_group, begin, end);
      }
      finish_tile(plane, n, begin, end, scratch.data());
    }
  }
  return out;
}

void NoTileFinish(float*, int64_t, int64_t, int64_t, float*) {}

// finish_group of the conv kernels: op(y + bias[c]) in place
template <typename ElementOp>
auto AddChannelBias(const float* bias, int64_t width, ElementOp op) {
  return [=](float* plane, int64_t first, int64_t last, int64_t begin, int64_t end) {
    ChannelBiasRows(plane, plane, bias, width, first, last, begin, end, op);
  };
}

paddle::Tensor ConvBias(const paddle::Tensor& bias_arg, int64_t channels, const char* op_name) {
  const paddle::Tensor bias = Dense(bias_arg);
  CheckFloat32Cpu(bias, op_name);
  PD_CHECK(bias.numel() == channels, op_name, ": bias size != output channels");
  return bias;
}

// op(conv1d(x, weight, bias, groups)) for kernel size 1
template <typename ElementOp>
std::vector<paddle::Tensor> PointwiseConvThen(const paddle::Tensor& x, const paddle::Tensor& weight,
                                              const paddle::Tensor& bias_arg, int64_t groups, const char* op_name,
                                              ElementOp op) {
  const paddle::Tensor bias = ConvBias(bias_arg, weight.shape()[0], op_name);
  return {GroupedPointwiseConv(x, weight, groups, op_name, AddChannelBias(bias.data<float>(), x.shape().back(), op),
                               NoTileFinish)};
}

std::vector<paddle::Tensor> PointwiseConvForward(const paddle::Tensor& x, const paddle::Tensor& weight,
                                                 const paddle::Tensor& bias, int64_t groups) {
  return PointwiseConvThen(x, weight, bias, groups, "pp_pointwise_conv", kIdentity);
}

// SqueezeBERT's intermediate block
std::vector<paddle::Tensor> PointwiseConvGeluForward(const paddle::Tensor& x, const paddle::Tensor& weight,
                                                     const paddle::Tensor& bias, int64_t groups) {
  return PointwiseConvThen(x, weight, bias, groups, "pp_pointwise_conv_gelu", kGelu);
}

// channel LayerNorm(conv1d(x, weight, bias, groups) + residual): SqueezeBERT's conv + dropout (off) + residual +
// layer norm blocks
std::vector<paddle::Tensor> PointwiseConvResidualLayerNormForward(
    const paddle::Tensor& x, const paddle::Tensor& weight, const paddle::Tensor& bias_arg,
    const paddle::Tensor& residual_arg, const paddle::Tensor& ln_weight_arg, const paddle::Tensor& ln_bias_arg,
    int64_t groups, float epsilon) {
  const char* op = "pp_pointwise_conv_residual_layer_norm";
  const int64_t channels = weight.shape()[0];
  const paddle::Tensor bias = ConvBias(bias_arg, channels, op);
  const paddle::Tensor residual = Dense(residual_arg);
  const paddle::Tensor ln_weight = ConvBias(ln_weight_arg, channels, op);
  const paddle::Tensor ln_bias = ConvBias(ln_bias_arg, channels, op);
  const int64_t width = x.shape().back();
  PD_CHECK(residual.numel() == x.shape()[0] * channels * width, op, ": residual shape != output shape");
  const float* b = bias.data<float>();
  const float* skip = residual.data<float>();
  const float* w = ln_weight.data<float>();
  const float* shift = ln_bias.data<float>();
  auto finish_tile = [=](float* plane, int64_t n, int64_t begin, int64_t end, float* scratch) {
    const float* skip_plane = skip + n * channels * width;
    for (int64_t c = 0; c < channels; ++c)
#pragma omp simd
      for (int64_t j = begin; j < end; ++j) plane[c * width + j] += b[c] + skip_plane[c * width + j];
    // the statistics are not kept (no backward): scratch holds them for this tile's columns
    for (int64_t block = begin; block < end; block += kColumnBlock)
      NormaliseColumns(plane, plane, w, shift, channels, width, block, std::min(block + kColumnBlock, end), epsilon,
                       scratch, scratch + width);
  };
  return {GroupedPointwiseConv(x, weight, groups, op, [](float*, int64_t, int64_t, int64_t, int64_t) {},
                               finish_tile)};
}

// softmax(q^T k * scale + mask) per head, then v @ probs^T: attention over [batch, channels, width] query, key and
// value (heads = blocks of channels), the context in the same layout. `scores` is [batch, heads, W, W], q^T k * scale
// + mask (what transformers' SqueezeBERT returns as its attentions), when keep_scores, else empty. mask: additive,
// batch x keys values.
std::vector<paddle::Tensor> ChannelAttentionForward(const paddle::Tensor& query_arg, const paddle::Tensor& key_arg,
                                                    const paddle::Tensor& value_arg, const paddle::Tensor& mask_arg,
                                                    float scale, int64_t heads, bool keep_scores) {
  const char* op = "pp_channel_attention";
  const paddle::Tensor query = Dense(query_arg);
  const paddle::Tensor key = Dense(key_arg);
  const paddle::Tensor value = Dense(value_arg);
  const paddle::Tensor mask = Dense(mask_arg);
  for (const auto* t : {&query, &key, &value, &mask}) CheckFloat32Cpu(*t, op);
  const NcwShape dims = NcwOf(query, op);
  PD_CHECK(key.shape() == query.shape() && value.shape() == query.shape(), op, ": query, key, value shapes differ");
  PD_CHECK(heads >= 1 && dims.channels % heads == 0, op, ": channels not divisible by heads");
  const int64_t width = dims.width, head_size = dims.channels / heads;
  PD_CHECK(mask.numel() == dims.batch * width, op, ": mask must hold batch x keys values");
  auto context = paddle::empty_like(query);
  auto scores = paddle::empty(keep_scores ? std::vector<int64_t>{dims.batch, heads, width, width}
                                          : std::vector<int64_t>{0},
                              paddle::DataType::FLOAT32, query.place());
  const float* q = query.data<float>();
  const float* k = key.data<float>();
  const float* v = value.data<float>();
  const float* add = mask.data<float>();
  float* result = context.data<float>();
  float* kept = keep_scores ? scores.data<float>() : nullptr;
#pragma omp parallel
  {
    SingleThreadedMkl single_threaded;
    std::vector<float> probs(width * width);
#pragma omp for schedule(static)
    for (int64_t task = 0; task < dims.batch * heads; ++task) {
      const int64_t n = task / heads, offset = (n * dims.channels + (task % heads) * head_size) * width;
      Sgemm(true, false, width, width, head_size, q + offset, width, k + offset, width, probs.data(), width);
      for (int64_t row = 0; row < width; ++row)
        SoftmaxRow(probs.data() + row * width, add + n * width, scale, width, probs.data() + row * width,
                   keep_scores ? kept + (task * width + row) * width : nullptr);
      Sgemm(false, true, head_size, width, width, v + offset, width, probs.data(), width, result + offset, width);
    }
  }
  return {context, scores};
}

// ---- GELU, erf form: x * Phi(x) ----------------------------------------------------------------------


std::vector<paddle::Tensor> GeluForward(const paddle::Tensor& x_arg) {
  const paddle::Tensor x = Dense(x_arg);
  CheckFloat32Cpu(x, "pp_gelu");
  auto out = paddle::empty_like(x);
  const float* in = x.data<float>();
  float* result = out.data<float>();
  const int64_t count = x.numel();
#pragma omp parallel for simd schedule(static)
  for (int64_t i = 0; i < count; ++i) result[i] = Gelu(in[i]);
  return {out};
}

std::vector<paddle::Tensor> GeluBackward(const paddle::Tensor& x_arg, const paddle::Tensor& grad_out_arg) {
  const paddle::Tensor x = Dense(x_arg);
  const paddle::Tensor grad_out = Dense(grad_out_arg);
  auto grad_x = paddle::empty_like(x);
  const float* in = x.data<float>();
  const float* grad = grad_out.data<float>();
  float* result = grad_x.data<float>();
  const int64_t count = x.numel();
#pragma omp parallel for simd schedule(static)
  for (int64_t i = 0; i < count; ++i) {
    const float cdf = 0.5f * (1.f + Erf(in[i] * kInvSqrt2));
    const float pdf = kInvSqrt2Pi * Exp(-0.5f * in[i] * in[i]);
    result[i] = grad[i] * (cdf + in[i] * pdf);
  }
  return {grad_x};
}

// ---- dropout: keep element i when hash(key, i) >= p * 2^32; the backward regenerates the same mask -------
// The hash is paddleport.dropout_masks.counter_hash32 (two keyed lowbias32 rounds): with a key from a
// DropoutMaskStream, torch draws the same mask from the same formula.

inline uint32_t LowBias32(uint32_t x) {
  x ^= x >> 16;
  x *= 0x7FEB352Du;
  x ^= x >> 15;
  x *= 0x846CA68Bu;
  return x ^ (x >> 16);
}

inline uint32_t CounterHash32(uint64_t key, uint64_t index) {
  const uint32_t bits = LowBias32(static_cast<uint32_t>(index) ^ static_cast<uint32_t>(key));
  return LowBias32(bits ^ static_cast<uint32_t>(key >> 32));
}

paddle::Tensor ApplyDropoutMask(const paddle::Tensor& x_arg, float p, int64_t seed) {
  const paddle::Tensor x = Dense(x_arg);
  auto out = paddle::empty_like(x);
  const float* in = x.data<float>();
  float* result = out.data<float>();
  const int64_t count = x.numel();
  const uint32_t threshold = static_cast<uint32_t>(std::min(4294967295.0, static_cast<double>(p) * 4294967296.0));
  const float keep_scale = 1.f / (1.f - p);
  const uint64_t key = static_cast<uint64_t>(seed);
#pragma omp parallel for simd schedule(static)
  for (int64_t i = 0; i < count; ++i)
    result[i] = CounterHash32(key, static_cast<uint64_t>(i)) >= threshold ? in[i] * keep_scale : 0.f;
  return out;
}

std::vector<paddle::Tensor> DropoutForward(const paddle::Tensor& x_arg, float p, int64_t seed) {
  const paddle::Tensor x = Dense(x_arg);
  CheckFloat32Cpu(x, "pp_dropout");
  PD_CHECK(p >= 0.f && p < 1.f, "pp_dropout: p must be in [0, 1)");
  PD_CHECK(x.numel() < (int64_t{1} << 32), "pp_dropout: at most 2^32 elements (32-bit counters)");
  return {ApplyDropoutMask(x, p, seed)};
}

std::vector<paddle::Tensor> DropoutBackward(const paddle::Tensor& grad_out_arg, float p, int64_t seed) {
  const paddle::Tensor grad_out = Dense(grad_out_arg);
  return {ApplyDropoutMask(grad_out, p, seed)};
}

// ---- DeBERTa's disentangled attention probabilities (inference only: no gradient) ------------------------
// softmax over the keys of where(keep, raw / scale + (c2p[q, c2p_index[q, k]] / scale + p2c[k, p2c_index[q, k]]
// / scale), lowest), in transformers' order of operations: the gathers of the content->position and
// position->content scores, the transposed p2c gather (p2c_index is given already transposed: [query, key]),
// the divisions, the adds, the masked fill with the dtype's minimum and the softmax are one pass over each score
// row, where Paddle's ops wrote and read a [batch, heads, query, key] tensor ten times (take_along_axis with
// materialised broadcast indices was the slowest). Either relative term may be absent (DeBERTa's pos_att_type).

std::vector<paddle::Tensor> DisentangledSoftmaxForward(const paddle::Tensor& raw_arg,
                                                       const paddle::optional<paddle::Tensor>& c2p_arg,
                                                       const paddle::optional<paddle::Tensor>& c2p_index_arg,
                                                       const paddle::optional<paddle::Tensor>& p2c_arg,
                                                       const paddle::optional<paddle::Tensor>& p2c_index_arg,
                                                       const paddle::Tensor& keep_arg, float scale) {
  const paddle::Tensor raw = Dense(raw_arg);
  const paddle::Tensor keep = Dense(keep_arg);
  CheckFloat32Cpu(raw, "pp_disentangled_softmax");
  const auto& shape = raw.shape();
  PD_CHECK(shape.size() == 4 && shape[2] == shape[3],
           "pp_disentangled_softmax: expects [batch, heads, length, length] scores");
  const int64_t batch = shape[0], heads = shape[1], length = shape[3];
  PD_CHECK(keep.dtype() == paddle::DataType::BOOL && keep.numel() == batch * length * length,
           "pp_disentangled_softmax: keep must be a [batch, 1, length, length] bool mask");
  PD_CHECK(c2p_arg.is_initialized() == c2p_index_arg.is_initialized() &&
               p2c_arg.is_initialized() == p2c_index_arg.is_initialized(),
           "pp_disentangled_softmax: each relative term needs its scores and its index");
  // the optional relative terms: scores [batch, heads, length, span] and int64 indices [length, length]
  struct Term {
    paddle::Tensor scores, index;
    const float* data = nullptr;
    const int64_t* at = nullptr;
    int64_t span = 0;
  };
  auto term_of = [&](const paddle::optional<paddle::Tensor>& scores, const paddle::optional<paddle::Tensor>& index,
                     const char* name) {
    Term term;
    if (!scores.is_initialized()) return term;
    term.scores = Dense(*scores);
    term.index = Dense(*index);
    CheckFloat32Cpu(term.scores, name);
    const auto& dims = term.scores.shape();
    PD_CHECK(dims.size() == 4 && dims[0] == batch && dims[1] == heads && dims[2] == length, name,
             ": scores must be [batch, heads, length, span]");
    PD_CHECK(term.index.dtype() == paddle::DataType::INT64 && term.index.numel() == length * length, name,
             ": index must be [length, length] int64");
    term.span = dims[3];
    const int64_t* at = term.index.data<int64_t>();
    for (int64_t i = 0; i < length * length; ++i)
      PD_CHECK(at[i] >= 0 && at[i] < term.span, name, ": index out of range");
    term.data = term.scores.data<float>();
    term.at = at;
    return term;
  };
  const Term c2p = term_of(c2p_arg, c2p_index_arg, "pp_disentangled_softmax (c2p)");
  const Term p2c = term_of(p2c_arg, p2c_index_arg, "pp_disentangled_softmax (p2c)");
  auto out = paddle::empty_like(raw);
  const float* in = raw.data<float>();
  const bool* kept = keep.data<bool>();
  float* result = out.data<float>();
  const float lowest = std::numeric_limits<float>::lowest();
  const int64_t rows = batch * heads * length;
#pragma omp parallel for schedule(static)
  for (int64_t row = 0; row < rows; ++row) {
    const int64_t plane = row / length, query = row % length, n = plane / heads;
    const float* source = in + row * length;
    const bool* keep_row = kept + (n * length + query) * length;
    float* target = result + row * length;
    for (int64_t key = 0; key < length; ++key) target[key] = 0.f;
    if (c2p.data != nullptr) {  // c2p[batch, head, query, c2p_index[query, key]]
      const float* scores = c2p.data + row * c2p.span;
      const int64_t* index = c2p.at + query * length;
      for (int64_t key = 0; key < length; ++key) target[key] = scores[index[key]] / scale;
    }
    if (p2c.data != nullptr) {  // p2c[batch, head, key, p2c_index[query, key]] (the transposed gather)
      const float* scores = p2c.data + plane * length * p2c.span;
      const int64_t* index = p2c.at + query * length;
      for (int64_t key = 0; key < length; ++key) target[key] += scores[key * p2c.span + index[key]] / scale;
    }
#pragma omp simd
    for (int64_t key = 0; key < length; ++key)
      target[key] = keep_row[key] ? source[key] / scale + target[key] : lowest;
    NormaliseExponentials(target, length, Largest(target, length));
  }
  return {out};
}

// ---- shape and dtype inference -----------------------------------------------------------------------

std::vector<std::vector<int64_t>> SameShape(const std::vector<int64_t>& x_shape) { return {x_shape}; }
std::vector<paddle::DataType> SameDtype(const paddle::DataType& x_dtype) { return {x_dtype}; }
std::vector<std::vector<int64_t>> FirstShape(const std::vector<int64_t>& x_shape, const std::vector<int64_t>&) {
  return {x_shape};
}
std::vector<paddle::DataType> FirstDtype(const paddle::DataType& x_dtype, const paddle::DataType&) {
  return {x_dtype};
}

std::vector<std::vector<int64_t>> SplitHeadsShape(const std::vector<int64_t>& x_shape, const std::vector<int64_t>&,
                                                  int heads) {
  return {{x_shape[0], heads, x_shape[1], heads > 0 ? x_shape[2] / heads : -1}};
}

std::vector<std::vector<int64_t>> LayerNormShapes(const std::vector<int64_t>& x_shape,
                                                  const std::vector<int64_t>&, const std::vector<int64_t>&) {
  int64_t rows = 1;
  for (size_t i = 0; i + 1 < x_shape.size(); ++i) rows *= x_shape[i];
  return {x_shape, {rows}, {rows}};
}
std::vector<std::vector<int64_t>> ChannelLayerNormShapes(const std::vector<int64_t>& x_shape,
                                                         const std::vector<int64_t>&, const std::vector<int64_t>&) {
  return {x_shape, {x_shape[0], x_shape[2]}, {x_shape[0], x_shape[2]}};
}
std::vector<paddle::DataType> LayerNormDtypes(const paddle::DataType& x_dtype, const paddle::DataType&,
                                              const paddle::DataType&) {
  return {x_dtype, paddle::DataType::FLOAT32, paddle::DataType::FLOAT32};
}

}  // namespace

PD_BUILD_OP(pp_softmax_mask)
    .Inputs({"X", "Mask"})
    .Outputs({"Out"})
    .Attrs({"scale: float"})
    .SetKernelFn(PD_KERNEL(SoftmaxMaskForward))
    .SetInferShapeFn(PD_INFER_SHAPE(FirstShape))
    .SetInferDtypeFn(PD_INFER_DTYPE(FirstDtype));
PD_BUILD_GRAD_OP(pp_softmax_mask)
    .Inputs({"Out", paddle::Grad("Out")})
    .Outputs({paddle::Grad("X")})
    .Attrs({"scale: float"})
    .SetKernelFn(PD_KERNEL(SoftmaxMaskBackward));

PD_BUILD_OP(pp_layer_norm)
    .Inputs({"X", "Weight", "Bias"})
    .Outputs({"Out", "Mean", "InvStd"})
    .Attrs({"epsilon: float"})
    .SetKernelFn(PD_KERNEL(LayerNormForward))
    .SetInferShapeFn(PD_INFER_SHAPE(LayerNormShapes))
    .SetInferDtypeFn(PD_INFER_DTYPE(LayerNormDtypes));
PD_BUILD_GRAD_OP(pp_layer_norm)
    .Inputs({"X", "Weight", "Mean", "InvStd", paddle::Grad("Out")})
    .Outputs({paddle::Grad("X"), paddle::Grad("Weight"), paddle::Grad("Bias")})
    .SetKernelFn(PD_KERNEL(LayerNormBackward));

PD_BUILD_OP(pp_gelu)
    .Inputs({"X"})
    .Outputs({"Out"})
    .SetKernelFn(PD_KERNEL(GeluForward))
    .SetInferShapeFn(PD_INFER_SHAPE(SameShape))
    .SetInferDtypeFn(PD_INFER_DTYPE(SameDtype));
PD_BUILD_GRAD_OP(pp_gelu)
    .Inputs({"X", paddle::Grad("Out")})
    .Outputs({paddle::Grad("X")})
    .SetKernelFn(PD_KERNEL(GeluBackward));

PD_BUILD_OP(pp_dropout)
    .Inputs({"X"})
    .Outputs({"Out"})
    .Attrs({"p: float", "seed: int64_t"})
    .SetKernelFn(PD_KERNEL(DropoutForward))
    .SetInferShapeFn(PD_INFER_SHAPE(SameShape))
    .SetInferDtypeFn(PD_INFER_DTYPE(SameDtype));
PD_BUILD_GRAD_OP(pp_dropout)
    .Inputs({paddle::Grad("Out")})
    .Outputs({paddle::Grad("X")})
    .Attrs({"p: float", "seed: int64_t"})
    .SetKernelFn(PD_KERNEL(DropoutBackward));

PD_BUILD_OP(pp_channel_layer_norm)
    .Inputs({"X", "Weight", "Bias"})
    .Outputs({"Out", "Mean", "InvStd"})
    .Attrs({"epsilon: float"})
    .SetKernelFn(PD_KERNEL(ChannelLayerNormForward))
    .SetInferShapeFn(PD_INFER_SHAPE(ChannelLayerNormShapes))
    .SetInferDtypeFn(PD_INFER_DTYPE(LayerNormDtypes));
PD_BUILD_GRAD_OP(pp_channel_layer_norm)
    .Inputs({"X", "Weight", "Mean", "InvStd", paddle::Grad("Out")})
    .Outputs({paddle::Grad("X"), paddle::Grad("Weight"), paddle::Grad("Bias")})
    .SetKernelFn(PD_KERNEL(ChannelLayerNormBackward));

PD_BUILD_OP(pp_channel_bias)
    .Inputs({"X", "Bias"})
    .Outputs({"Out"})
    .SetKernelFn(PD_KERNEL(ChannelBiasForward))
    .SetInferShapeFn(PD_INFER_SHAPE(FirstShape))
    .SetInferDtypeFn(PD_INFER_DTYPE(FirstDtype));
PD_BUILD_GRAD_OP(pp_channel_bias)
    .Inputs({paddle::Grad("Out")})
    .Outputs({paddle::Grad("X"), paddle::Grad("Bias")})
    .SetKernelFn(PD_KERNEL(ChannelBiasBackward));

PD_BUILD_OP(pp_bias_residual_layer_norm)
    .Inputs({"X", "Bias", "Residual", "Weight", "LnBias"})
    .Outputs({"Out"})
    .Attrs({"epsilon: float"})
    .SetKernelFn(PD_KERNEL(BiasResidualLayerNormForward));

PD_BUILD_OP(pp_bias_gelu)
    .Inputs({"X", "Bias"})
    .Outputs({"Out"})
    .SetKernelFn(PD_KERNEL(BiasGeluForward))
    .SetInferShapeFn(PD_INFER_SHAPE(FirstShape))
    .SetInferDtypeFn(PD_INFER_DTYPE(FirstDtype));

PD_BUILD_OP(pp_pointwise_conv)
    .Inputs({"X", "Weight", "Bias"})
    .Outputs({"Out"})
    .Attrs({"groups: int64_t"})
    .SetKernelFn(PD_KERNEL(PointwiseConvForward));

PD_BUILD_OP(pp_pointwise_conv_gelu)
    .Inputs({"X", "Weight", "Bias"})
    .Outputs({"Out"})
    .Attrs({"groups: int64_t"})
    .SetKernelFn(PD_KERNEL(PointwiseConvGeluForward));

PD_BUILD_OP(pp_pointwise_conv_residual_layer_norm)
    .Inputs({"X", "Weight", "Bias", "Residual", "LnWeight", "LnBias"})
    .Outputs({"Out"})
    .Attrs({"groups: int64_t", "epsilon: float"})
    .SetKernelFn(PD_KERNEL(PointwiseConvResidualLayerNormForward));

PD_BUILD_OP(pp_channel_attention)
    .Inputs({"Query", "Key", "Value", "Mask"})
    .Outputs({"Context", "Scores"})
    .Attrs({"scale: float", "heads: int64_t", "keep_scores: bool"})
    .SetKernelFn(PD_KERNEL(ChannelAttentionForward));

PD_BUILD_OP(pp_disentangled_softmax)
    .Inputs({"Raw", paddle::Optional("C2p"), paddle::Optional("C2pIndex"), paddle::Optional("P2c"),
             paddle::Optional("P2cIndex"), "Keep"})
    .Outputs({"Out"})
    .Attrs({"scale: float"})
    .SetKernelFn(PD_KERNEL(DisentangledSoftmaxForward));

PD_BUILD_OP(pp_bias_split_heads)
    .Inputs({"X", "Bias"})
    .Outputs({"Out"})
    .Attrs({"heads: int"})
    .SetKernelFn(PD_KERNEL(BiasSplitHeadsForward))
    .SetInferShapeFn(PD_INFER_SHAPE(SplitHeadsShape))
    .SetInferDtypeFn(PD_INFER_DTYPE(FirstDtype));
