// float32 CPU kernels for the layers where Paddle 3.3's eager CPU kernels are slowest in BERT training:
// masked softmax, layer norm, erf GELU and dropout, each with its gradient. Rows are split over OpenMP
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
  for (int64_t row = 0; row < rows; ++row) {
    const float* source = in + row * keys;
    const float* mask_row = add + (row / rows_per_batch) * keys;
    float* target = result + row * keys;
    float largest = -INFINITY;
    for (int64_t j = 0; j < keys; ++j) {
      target[j] = source[j] * scale + mask_row[j];
      largest = std::max(largest, target[j]);
    }
    NormaliseExponentials(target, keys, largest);
  }
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
      const float value = in[row * width + j] + b[j];
      result[row * width + j] = 0.5f * value * (1.f + Erf(value * kInvSqrt2));
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

// Inference-only (no gradient): channel LayerNorm(x + bias[c] + residual), SqueezeBERT's conv + dropout + residual
// + layer norm blocks after their grouped matmul.
std::vector<paddle::Tensor> ChannelBiasResidualLayerNormForward(
    const paddle::Tensor& x_arg, const paddle::Tensor& bias_arg, const paddle::Tensor& residual_arg,
    const paddle::Tensor& weight_arg, const paddle::Tensor& ln_bias_arg, float epsilon) {
  const paddle::Tensor x = Dense(x_arg);
  const paddle::Tensor bias = Dense(bias_arg);
  const paddle::Tensor residual = Dense(residual_arg);
  const paddle::Tensor weight = Dense(weight_arg);
  const paddle::Tensor ln_bias = Dense(ln_bias_arg);
  CheckFloat32Cpu(x, "pp_channel_bias_residual_layer_norm");
  const NcwShape dims = NcwOf(x, "pp_channel_bias_residual_layer_norm");
  PD_CHECK(residual.numel() == x.numel(), "pp_channel_bias_residual_layer_norm: residual shape != input shape");
  PD_CHECK(bias.numel() == dims.channels && weight.numel() == dims.channels && ln_bias.numel() == dims.channels,
           "pp_channel_bias_residual_layer_norm: bias/weight size != channels");
  auto out = paddle::empty_like(x);
  const int64_t width = dims.width, channels = dims.channels, blocks = ColumnBlocks(width);
  std::vector<float> means(static_cast<size_t>(dims.batch * width)), inv_stds(means.size());  // not returned
  const float* b = bias.data<float>();
  float* result = out.data<float>();
#pragma omp parallel for schedule(static)
  for (int64_t task = 0; task < dims.batch * blocks; ++task) {
    const int64_t n = task / blocks, begin = (task % blocks) * kColumnBlock;
    const int64_t end = std::min(begin + kColumnBlock, width);
    const float* in = x.data<float>() + n * channels * width;
    const float* skip = residual.data<float>() + n * channels * width;
    float* target = result + n * channels * width;
    for (int64_t c = 0; c < channels; ++c)
#pragma omp simd
      for (int64_t j = begin; j < end; ++j) target[c * width + j] = in[c * width + j] + b[c] + skip[c * width + j];
    NormaliseColumns(target, target, weight.data<float>(), ln_bias.data<float>(), channels, width, begin, end,
                     epsilon, means.data() + n * width, inv_stds.data() + n * width);
  }
  return {out};
}

// Inference-only: GELU(x + bias[c]), SqueezeBERT's intermediate block after its grouped matmul.
std::vector<paddle::Tensor> ChannelBiasGeluForward(const paddle::Tensor& x_arg, const paddle::Tensor& bias_arg) {
  const paddle::Tensor x = Dense(x_arg);
  const paddle::Tensor bias = Dense(bias_arg);
  CheckFloat32Cpu(x, "pp_channel_bias_gelu");
  const NcwShape dims = NcwOf(x, "pp_channel_bias_gelu");
  PD_CHECK(bias.numel() == dims.channels, "pp_channel_bias_gelu: bias size != channels");
  auto out = paddle::empty_like(x);
  const float* in = x.data<float>();
  const float* b = bias.data<float>();
  float* result = out.data<float>();
  const int64_t planes = dims.batch * dims.channels, width = dims.width;
#pragma omp parallel for schedule(static)
  for (int64_t plane = 0; plane < planes; ++plane) {
    const float shift = b[plane % dims.channels];
#pragma omp simd
    for (int64_t j = 0; j < width; ++j) {
      const float value = in[plane * width + j] + shift;
      result[plane * width + j] = 0.5f * value * (1.f + Erf(value * kInvSqrt2));
    }
  }
  return {out};
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

std::vector<paddle::Tensor> ChannelBiasForward(const paddle::Tensor& x_arg, const paddle::Tensor& bias_arg) {
  const paddle::Tensor x = Dense(x_arg);
  const paddle::Tensor bias = Dense(bias_arg);
  CheckFloat32Cpu(x, "pp_channel_bias");
  const NcwShape dims = NcwOf(x, "pp_channel_bias");
  PD_CHECK(bias.numel() == dims.channels, "pp_channel_bias: bias size != channels");
  auto out = paddle::empty_like(x);
  const float* in = x.data<float>();
  const float* b = bias.data<float>();
  float* result = out.data<float>();
  const int64_t planes = dims.batch * dims.channels, width = dims.width;
#pragma omp parallel for schedule(static)
  for (int64_t plane = 0; plane < planes; ++plane) {
    const float value = b[plane % dims.channels];
#pragma omp simd
    for (int64_t j = 0; j < width; ++j) result[plane * width + j] = in[plane * width + j] + value;
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

// ---- GELU, erf form: x * Phi(x) ----------------------------------------------------------------------


std::vector<paddle::Tensor> GeluForward(const paddle::Tensor& x_arg) {
  const paddle::Tensor x = Dense(x_arg);
  CheckFloat32Cpu(x, "pp_gelu");
  auto out = paddle::empty_like(x);
  const float* in = x.data<float>();
  float* result = out.data<float>();
  const int64_t count = x.numel();
#pragma omp parallel for simd schedule(static)
  for (int64_t i = 0; i < count; ++i) result[i] = 0.5f * in[i] * (1.f + Erf(in[i] * kInvSqrt2));
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
    float largest = lowest;
    for (int64_t key = 0; key < length; ++key) {
      target[key] = keep_row[key] ? source[key] / scale + target[key] : lowest;
      largest = std::max(largest, target[key]);
    }
    NormaliseExponentials(target, length, largest);
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

PD_BUILD_OP(pp_channel_bias_residual_layer_norm)
    .Inputs({"X", "Bias", "Residual", "Weight", "LnBias"})
    .Outputs({"Out"})
    .Attrs({"epsilon: float"})
    .SetKernelFn(PD_KERNEL(ChannelBiasResidualLayerNormForward));

PD_BUILD_OP(pp_channel_bias_gelu)
    .Inputs({"X", "Bias"})
    .Outputs({"Out"})
    .SetKernelFn(PD_KERNEL(ChannelBiasGeluForward))
    .SetInferShapeFn(PD_INFER_SHAPE(FirstShape))
    .SetInferDtypeFn(PD_INFER_DTYPE(FirstDtype));

PD_BUILD_OP(pp_disentangled_softmax)
    .Inputs({"Raw", paddle::Optional("C2p"), paddle::Optional("C2pIndex"), paddle::Optional("P2c"),
             paddle::Optional("P2cIndex"), "Keep"})
    .Outputs({"Out"})
    .Attrs({"scale: float"})
    .SetKernelFn(PD_KERNEL(DisentangledSoftmaxForward));
