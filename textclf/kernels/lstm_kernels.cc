// textclf's native CPU kernels for the LSTM recurrence (see textclf/kernels/__init__.py).
//
// The recurrence over precomputed, gate-scaled input projections, forward and
// backward, each as one TensorFlow op. Inside, the batch's rows are cut into
// one block per intra-op thread; a block runs all its time steps on one
// thread (the rows of an LSTM are independent), with one small single-threaded
// matrix product per step and the element-wise cell update fused around it. The
// graph loop this replaces (textclf/models/fused_lstm.py) dispatches about 30
// small ops per step, each through TensorFlow's executor. A third op computes
// what follows the backward op in one pass over its output: the gradients of
// the layer's inputs and of both weights (see "Gradients over all steps").
//
// The per-step products use the recurrent kernel packed once per op call
// (PackPanels) and a register-tiled loop (MultiplyPacked). Eigen's general
// product, used before, packs both operands on every call and, above its
// stack limit, allocates its packing buffers each time, fresh pages that the
// kernel must fault in and zero: in a perf profile of bbc_rnn's training the
// packing and those page faults took as long as the products' arithmetic.
// The ops also prefetch and stream their rows (see Memory below).
//
// Layout (row-major, float32), for B rows, T steps, U units:
//   projected  (B, T, 4U)  x_t @ W, gates i, f, c, o (Keras' order), with the
//                          candidate's columns doubled (the gate scale)
//   bias       (4U,)       b, with the same scale
//   kernel     (U, 4U)     recurrent kernel, with the same scale
//   h0, c0     (B, U)      initial states
//   mask       (B, T)      1 = real step, 0 = padding (the state is carried)
// With the candidate's pre-activation doubled, one sigmoid serves all gates:
// tanh(z) = 2 sigmoid(2z) - 1. The sigmoid itself is computed as
// (1 + tanh(z / 2)) / 2: Eigen's vectorised tanh is faster than its logistic,
// and TensorFlow's own tanh is the same function (see Activations below).
//
// Outputs follow Keras' masking rule: a masked step carries h and c and
// repeats the previous *output*, which starts at zeros, not at h0.

#include <algorithm>
#include <cstdint>
#include <vector>

#if defined(__AVX512F__) || (defined(__AVX2__) && defined(__FMA__))
#include <immintrin.h>
#endif

#include "Eigen/Core"
#include "tensorflow/core/framework/op.h"
#include "tensorflow/core/framework/op_kernel.h"
#include "tensorflow/core/framework/shape_inference.h"
#include "tensorflow/core/platform/blocking_counter.h"
#include "tensorflow/core/platform/threadpool.h"

namespace textclf {
namespace {

using tensorflow::DEVICE_CPU;
using tensorflow::OpKernel;
using tensorflow::OpKernelConstruction;
using tensorflow::OpKernelContext;
using tensorflow::Tensor;
using tensorflow::TensorShape;
using tensorflow::errors::InvalidArgument;
using tensorflow::shape_inference::DimensionHandle;
using tensorflow::shape_inference::InferenceContext;
using tensorflow::shape_inference::ShapeHandle;

using Matrix = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using MatrixMap = Eigen::Map<Matrix>;
using ConstMatrixMap = Eigen::Map<const Matrix>;
using Vector = Eigen::Map<Eigen::ArrayXf>;
using ConstVector = Eigen::Map<const Eigen::ArrayXf>;

// ---- Small products with a packed right-hand side --------------------------
//
// c (rows, PaddedWidth(n)) = a (rows, depth) x b (depth, n), with b packed by
// PackPanels into panels of kPanel columns: panel p holds b[k][p*kPanel + j]
// at packed[(p * depth + k) * kPanel + j], zero beyond column n. A tile of up
// to kTileRows rows by one panel keeps its 2 * kTileRows accumulators in
// registers and reads each of a's values once per panel as a broadcast.
// The lane type is the widest vector this build's CPU flags (-march=native)
// offer; the scalar fallback keeps the ops correct anywhere.
#if defined(__AVX512F__)
using Lanes = __m512;
constexpr int kLanes = 16;
inline Lanes LoadLanes(const float* p) { return _mm512_loadu_ps(p); }
inline void StoreLanes(float* p, Lanes v) { _mm512_storeu_ps(p, v); }
inline Lanes Broadcast(float x) { return _mm512_set1_ps(x); }
inline Lanes MultiplyAdd(Lanes a, Lanes b, Lanes c) { return _mm512_fmadd_ps(a, b, c); }
inline Lanes ZeroLanes() { return _mm512_setzero_ps(); }
#elif defined(__AVX2__) && defined(__FMA__)
using Lanes = __m256;
constexpr int kLanes = 8;
inline Lanes LoadLanes(const float* p) { return _mm256_loadu_ps(p); }
inline void StoreLanes(float* p, Lanes v) { _mm256_storeu_ps(p, v); }
inline Lanes Broadcast(float x) { return _mm256_set1_ps(x); }
inline Lanes MultiplyAdd(Lanes a, Lanes b, Lanes c) { return _mm256_fmadd_ps(a, b, c); }
inline Lanes ZeroLanes() { return _mm256_setzero_ps(); }
#else
using Lanes = float;
constexpr int kLanes = 1;
inline Lanes LoadLanes(const float* p) { return *p; }
inline void StoreLanes(float* p, Lanes v) { *p = v; }
inline Lanes Broadcast(float x) { return x; }
inline Lanes MultiplyAdd(Lanes a, Lanes b, Lanes c) { return a * b + c; }
inline Lanes ZeroLanes() { return 0.0f; }
#endif

constexpr int kPanel = 2 * kLanes;  // columns per packed panel
constexpr int kTileRows = 8;        // 16 accumulators: half the AVX-512 registers

int64_t PaddedWidth(int64_t n) { return (n + kPanel - 1) / kPanel * kPanel; }

// Packs the (depth, width) matrix whose element (k, j) is at(k, j).
template <typename At>
Eigen::VectorXf PackPanels(int64_t depth, int64_t width, At at) {
  Eigen::VectorXf packed(PaddedWidth(width) * depth);
  for (int64_t p = 0; p < PaddedWidth(width) / kPanel; ++p)
    for (int64_t k = 0; k < depth; ++k)
      for (int64_t j = 0; j < kPanel; ++j) {
        const int64_t column = p * kPanel + j;
        packed[(p * depth + k) * kPanel + j] = column < width ? at(k, column) : 0.0f;
      }
  return packed;
}

// One tile: c[r][0, kPanel) = sum_k a[r * lda + k] * panel[k][.], r < kRows.
template <int kRows>
void MultiplyTile(const float* a, int64_t lda, const float* panel, int64_t depth, float* c,
                  int64_t ldc) {
  Lanes low[kRows], high[kRows];
  for (int r = 0; r < kRows; ++r) low[r] = high[r] = ZeroLanes();
  for (int64_t k = 0; k < depth; ++k) {
    const Lanes b_low = LoadLanes(panel + k * kPanel);
    const Lanes b_high = LoadLanes(panel + k * kPanel + kLanes);
#pragma GCC unroll 8
    for (int r = 0; r < kRows; ++r) {
      const Lanes x = Broadcast(a[r * lda + k]);
      low[r] = MultiplyAdd(x, b_low, low[r]);
      high[r] = MultiplyAdd(x, b_high, high[r]);
    }
  }
  for (int r = 0; r < kRows; ++r) {
    StoreLanes(c + r * ldc, low[r]);
    StoreLanes(c + r * ldc + kLanes, high[r]);
  }
}

// c (rows, padded_width), row-major, = a (rows, depth; rows lda apart) x packed.
void MultiplyPacked(const float* a, int64_t lda, int64_t rows, const Eigen::VectorXf& packed,
                    int64_t depth, int64_t padded_width, float* c) {
  for (int64_t p = 0; p < padded_width / kPanel; ++p) {
    const float* panel = packed.data() + p * depth * kPanel;
    int64_t r = 0;
    for (; r + kTileRows <= rows; r += kTileRows)
      MultiplyTile<kTileRows>(a + r * lda, lda, panel, depth, c + r * padded_width + p * kPanel,
                              padded_width);
    const float* a_rest = a + r * lda;
    float* c_rest = c + r * padded_width + p * kPanel;
    switch (rows - r) {  // the last rows, fewer than a tile
      case 7: MultiplyTile<7>(a_rest, lda, panel, depth, c_rest, padded_width); break;
      case 6: MultiplyTile<6>(a_rest, lda, panel, depth, c_rest, padded_width); break;
      case 5: MultiplyTile<5>(a_rest, lda, panel, depth, c_rest, padded_width); break;
      case 4: MultiplyTile<4>(a_rest, lda, panel, depth, c_rest, padded_width); break;
      case 3: MultiplyTile<3>(a_rest, lda, panel, depth, c_rest, padded_width); break;
      case 2: MultiplyTile<2>(a_rest, lda, panel, depth, c_rest, padded_width); break;
      case 1: MultiplyTile<1>(a_rest, lda, panel, depth, c_rest, padded_width); break;
      default: break;
    }
  }
}

// ---- Gradients over all steps at once ------------------------------------------
//
// After the backward op, three large products remain, all reading d_z
// (K, 4U), K = B*T in the thousands: the inputs' gradient d_x = d_z W^T
// (K, D), and the weights' gradients d_W = x^T d_z and d_U = h_prev^T d_z,
// sums over all K steps. The last two have both operands K-major, so a
// library product must transpose or repack its left one first (oneDNN's
// ran at about 55% of its peak here). StepGradients cuts K into chunks of
// kDepthChunk steps, packs each chunk of both operands into the layouts the
// register tile reads (x and h_prev in kTileRows-column strips, d_z in
// PackPanels' panels, all small enough to stay in L2) and adds each tile's
// product into the weights' gradients; d_x for the chunk's rows is the
// per-step product of MultiplyPacked, on d_z's rows still in cache from
// packing them. So d_z is read from memory once for all three.

constexpr int64_t kDepthChunk = 128;

// Both packers copy whole strips and panels in loops of a fixed count, which
// the compiler turns into a few vector moves (std::copy of a runtime count
// is a call to memmove for every 128 bytes); only a last, partial strip or
// panel takes the general path.

// The first real step of each of `rows` batch rows from `first` on, of a
// (B, T) mask; `steps` (T) for a row without one.
std::vector<int64_t> FirstRealSteps(const float* mask, int64_t first, int64_t rows,
                                    int64_t steps) {
  std::vector<int64_t> first_real(rows, steps);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t t = 0; t < steps; ++t)
      if (mask[(first + r) * steps + t] > 0) { first_real[r] = t; break; }
  return first_real;
}

// One left operand of a weight's gradient, (K, width), read row by row,
// and the gradient's accumulator, (width rounded up to kTileRows,
// PaddedWidth(4U)). Row k is a[k] of a row-major matrix, except where
// `first_rows` is set: then the operand is h before each step, read from
// the forward op's outputs (K = B*T rows, `steps` per batch row b): row
// (b, t) is outputs[b, t - 1] after the row's first real step, and h0[b]
// up to it (Keras' outputs are zeros before a row's first real step; a
// masked step carries h, so the output before any later step is h).
struct TallOperand {
  const float* a;
  int64_t width;
  float* product;
  const float* first_rows = nullptr;   // h0 (B, width)
  const int64_t* first_real = nullptr;  // (B,) each row's first real step
  int64_t steps = 0;

  const float* Row(int64_t k) const {
    if (first_rows == nullptr) return a + k * width;
    const int64_t b = k / steps, t = k % steps;
    return t > first_real[b] ? a + (k - 1) * width : first_rows + b * width;
  }
};

// Strips of kTileRows columns of the operand's rows [k0, k0 + depth):
// strip s holds row k0 + k, column s * kTileRows + r, at
// strips[(s * depth + k) * kTileRows + r], zero beyond column width.
void PackStrips(const TallOperand& operand, int64_t k0, int64_t depth, float* strips) {
  const int64_t width = operand.width, whole = width / kTileRows;
  for (int64_t k = 0; k < depth; ++k) {
    const float* row = operand.Row(k0 + k);
    for (int64_t s = 0; s < whole; ++s) {
      float* to = strips + (s * depth + k) * kTileRows;
      for (int r = 0; r < kTileRows; ++r) to[r] = row[s * kTileRows + r];
    }
    if (whole * kTileRows < width) {
      float* to = strips + (whole * depth + k) * kTileRows;
      for (int64_t r = 0; r < kTileRows; ++r)
        to[r] = whole * kTileRows + r < width ? row[whole * kTileRows + r] : 0.0f;
    }
  }
}

// Rows [k0, k0 + depth) of the (K, width) row-major b, packed as PackPanels does.
void PackRowPanels(const float* b, int64_t width, int64_t k0, int64_t depth, float* panels) {
  const int64_t whole = width / kPanel;
  for (int64_t k = 0; k < depth; ++k) {
    const float* row = b + (k0 + k) * width;
    for (int64_t p = 0; p < whole; ++p) {
      float* to = panels + (p * depth + k) * kPanel;
      for (int j = 0; j < kPanel; ++j) to[j] = row[p * kPanel + j];
    }
    if (whole * kPanel < width) {
      float* to = panels + (whole * depth + k) * kPanel;
      for (int64_t j = 0; j < kPanel; ++j)
        to[j] = whole * kPanel + j < width ? row[whole * kPanel + j] : 0.0f;
    }
  }
}

// c[r][0, kPanel) += sum_k strip[k][r] * panel[k][.], r < kTileRows: the
// tile of MultiplyTile with its left operand packed too, accumulating.
void AddTile(const float* strip, const float* panel, int64_t depth, float* c, int64_t ldc) {
  Lanes low[kTileRows], high[kTileRows];
  for (int r = 0; r < kTileRows; ++r) {
    low[r] = LoadLanes(c + r * ldc);
    high[r] = LoadLanes(c + r * ldc + kLanes);
  }
  for (int64_t k = 0; k < depth; ++k) {
    const Lanes b_low = LoadLanes(panel + k * kPanel);
    const Lanes b_high = LoadLanes(panel + k * kPanel + kLanes);
#pragma GCC unroll 8
    for (int r = 0; r < kTileRows; ++r) {
      const Lanes x = Broadcast(strip[k * kTileRows + r]);
      low[r] = MultiplyAdd(x, b_low, low[r]);
      high[r] = MultiplyAdd(x, b_high, high[r]);
    }
  }
  for (int r = 0; r < kTileRows; ++r) {
    StoreLanes(c + r * ldc, low[r]);
    StoreLanes(c + r * ldc + kLanes, high[r]);
  }
}

// For steps [k0, k1) of d_z (K, gates): product += a^T d_z for each operand,
// and d_x (K, width) = d_z kernel^T with kernel^T (gates, width) packed by
// PackPanels. The packing buffers are the calling thread's own, kept
// between calls (fresh ones would be faulted in and zeroed on every call).
void StepGradients(const float* d_z, int64_t gates, int64_t k0, int64_t k1,
                   const std::vector<TallOperand>& operands, const Eigen::VectorXf& kernel_t,
                   int64_t width, float* d_x) {
  thread_local std::vector<float> panels, strips, d_x_padded;
  const int64_t padded_gates = PaddedWidth(gates), padded_width = PaddedWidth(width);
  auto at_least = [](std::vector<float>& buffer, size_t size) {
    if (buffer.size() < size) buffer.resize(size);
  };
  at_least(panels, padded_gates * kDepthChunk);
  for (const TallOperand& operand : operands)
    at_least(strips, (operand.width + kTileRows - 1) / kTileRows * kTileRows * kDepthChunk);
  // MultiplyPacked writes whole panels: straight into d_x when its rows
  // are whole panels wide, else into a buffer whose first columns are copied.
  const bool direct = padded_width == width;
  if (!direct) at_least(d_x_padded, kDepthChunk * padded_width);
  for (int64_t chunk = k0; chunk < k1; chunk += kDepthChunk) {
    const int64_t depth = std::min(kDepthChunk, k1 - chunk);
    PackRowPanels(d_z, gates, chunk, depth, panels.data());
    float* d_x_rows = direct ? d_x + chunk * width : d_x_padded.data();
    MultiplyPacked(d_z + chunk * gates, gates, depth, kernel_t, gates, padded_width, d_x_rows);
    if (!direct)
      MatrixMap(d_x + chunk * width, depth, width) =
          MatrixMap(d_x_rows, depth, padded_width).leftCols(width);
    for (const TallOperand& operand : operands) {
      PackStrips(operand, chunk, depth, strips.data());
      for (int64_t p = 0; p < padded_gates / kPanel; ++p)
        for (int64_t s = 0; s * kTileRows < operand.width; ++s)
          AddTile(strips.data() + s * depth * kTileRows, panels.data() + p * depth * kPanel,
                  depth, operand.product + s * kTileRows * padded_gates + p * kPanel,
                  padded_gates);
    }
  }
}

// ---- Memory ------------------------------------------------------------------
//
// A step reads and writes each row's slice of the (B, T, .) tensors, and
// consecutive rows' slices are T slices apart: every row is a stream of its
// own that enters a new page every few steps, which the hardware prefetcher
// does not follow, so each step would wait on main memory row by row. The ops
// prefetch the next step's slices themselves, and write what only a later op
// reads (outputs, records, d_projected) with streaming stores, which skip
// reading the destination's lines first.

// Prefetches into L2, not L1: a block's slices of one step (32 rows x 2 KB at
// batch 64) would push the product's current panel out of L1.
inline void Prefetch(const float* p, int64_t n) {
  for (int64_t i = 0; i < n; i += 64 / sizeof(float)) __builtin_prefetch(p + i, 0, 2);
}

inline void StreamCopy(const float* from, float* to, int64_t n) {
#if defined(__AVX512F__)
  int64_t i = 0;
  for (; i < n && reinterpret_cast<uintptr_t>(to + i) % 64 != 0; ++i) to[i] = from[i];
  for (; i + 16 <= n; i += 16) _mm512_stream_ps(to + i, _mm512_loadu_ps(from + i));
  for (; i < n; ++i) to[i] = from[i];
#else
  std::copy(from, from + n, to);
#endif
}

// Makes a thread's streaming stores visible before it reports its block done.
inline void StreamFence() {
#if defined(__AVX512F__)
  _mm_sfence();
#endif
}

// Rows below this share a thread: a smaller block's matmul is too small to pay
// for the hand-off.
constexpr int64_t kMinRowsPerBlock = 4;

// Runs work(block, first_row, rows) over [0, batch) in contiguous blocks, one
// per intra-op thread (the first on the calling thread); returns the number
// of blocks.
template <typename Work>
int64_t ForEachRowBlock(OpKernelContext* ctx, int64_t batch, Work work) {
  auto* pool = ctx->device()->tensorflow_cpu_worker_threads()->workers;
  const int64_t blocks = std::max<int64_t>(
      1, std::min<int64_t>(pool->NumThreads(), batch / kMinRowsPerBlock));
  auto bounds = [&](int64_t k) { return batch * k / blocks; };
  tensorflow::BlockingCounter done(blocks - 1);
  for (int64_t k = 1; k < blocks; ++k) {
    pool->Schedule([&, k] {
      work(k, bounds(k), bounds(k + 1) - bounds(k));
      StreamFence();
      done.DecrementCount();
    });
  }
  work(0, bounds(0), bounds(1) - bounds(0));
  StreamFence();
  done.Wait();
  return blocks;
}

// ---- Activations -------------------------------------------------------------
//
// tanh is Eigen's float tanh (TensorFlow's too): a 9/8-degree rational
// function of the input clamped to [-c, c]. With AVX-512 its one division,
// the costliest instruction in it, is done here as a reciprocal estimate (14
// bits) refined by one Newton step: the result stays within 2 ulps of
// Eigen's tanh (checked over [-10, 10] in steps of 1/4096). Other builds use
// Eigen's.
#if defined(__AVX512F__)
inline __m512 Tanh(__m512 x) {
  // Eigen's clamp and coefficients (GenericPacketMathFunctions.h, ptanh_float, FMA build).
  const __m512 clamp = _mm512_set1_ps(8.01773357391357422f);
  x = _mm512_max_ps(_mm512_min_ps(x, clamp), _mm512_sub_ps(_mm512_setzero_ps(), clamp));
  const __m512 x2 = _mm512_mul_ps(x, x);
  __m512 p = _mm512_set1_ps(1.394553628e-8f);
  p = _mm512_fmadd_ps(p, x2, _mm512_set1_ps(2.102733560e-5f));
  p = _mm512_fmadd_ps(p, x2, _mm512_set1_ps(3.520756727e-3f));
  p = _mm512_fmadd_ps(p, x2, _mm512_set1_ps(1.340216100e-1f));
  p = _mm512_fmadd_ps(_mm512_mul_ps(x2, x), p, x);  // x^3 p + x
  __m512 q = _mm512_set1_ps(8.015776984e-7f);
  q = _mm512_fmadd_ps(q, x2, _mm512_set1_ps(3.326951409e-4f));
  q = _mm512_fmadd_ps(q, x2, _mm512_set1_ps(2.597254514e-2f));
  q = _mm512_fmadd_ps(q, x2, _mm512_set1_ps(4.673548340e-1f));
  q = _mm512_fmadd_ps(q, x2, _mm512_set1_ps(1.0f));  // q >= 1
  __m512 r = _mm512_rcp14_ps(q);
  r = _mm512_mul_ps(r, _mm512_fnmadd_ps(q, r, _mm512_set1_ps(2.0f)));  // r (2 - q r)
  return _mm512_mul_ps(p, r);
}

// Lanes [0, n) of the 16 at i (a mask for the last, partial vector).
inline __mmask16 Head(int64_t n, int64_t i) {
  return n - i >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << (n - i)) - 1);
}
#endif

// out[j] = tanh(in[j]), j < n.
inline void TanhOf(const float* in, float* out, int64_t n) {
#if defined(__AVX512F__)
  for (int64_t i = 0; i < n; i += 16) {
    const __mmask16 lanes = Head(n, i);
    _mm512_mask_storeu_ps(out + i, lanes, Tanh(_mm512_maskz_loadu_ps(lanes, in + i)));
  }
#else
  Vector(out, n) = ConstVector(in, n).tanh();
#endif
}

// s[j] = sigmoid(v) = (1 + tanh(v / 2)) / 2 for v = z[j] + x[j] + b[j], j < n;
// prefetches next[0, n) (when set) one cache line per 16 values on the way.
inline void SigmoidOf(const float* z, const float* x, const float* b, float* s, int64_t n,
                      const float* next) {
#if defined(__AVX512F__)
  const __m512 half = _mm512_set1_ps(0.5f);
  for (int64_t i = 0; i < n; i += 16) {
    if (next != nullptr) __builtin_prefetch(next + i, 0, 2);
    const __mmask16 lanes = Head(n, i);
    const __m512 v = _mm512_add_ps(_mm512_add_ps(_mm512_maskz_loadu_ps(lanes, z + i),
                                                 _mm512_maskz_loadu_ps(lanes, x + i)),
                                   _mm512_maskz_loadu_ps(lanes, b + i));
    _mm512_mask_storeu_ps(s + i, lanes, _mm512_fmadd_ps(half, Tanh(_mm512_mul_ps(half, v)), half));
  }
#else
  if (next != nullptr) Prefetch(next, n);
  const auto v = ConstVector(z, n) + ConstVector(x, n) + ConstVector(b, n);
  Vector(s, n) = 0.5f * (0.5f * v).tanh() + 0.5f;
#endif
}

// Checks the shapes shared by both ops: kernel (U, 4U), the projections'
// shape (B, T, 4U), mask (B, T), states (B, U).
tensorflow::Status CheckShapes(const TensorShape& sequence, const Tensor& kernel,
                               const Tensor& state_a, const Tensor& state_b,
                               const Tensor& mask) {
  if (kernel.dims() != 2 || kernel.dim_size(1) != 4 * kernel.dim_size(0))
    return InvalidArgument("kernel must be (U, 4U), got ", kernel.shape().DebugString());
  const int64_t units = kernel.dim_size(0);
  if (sequence.dims() != 3 || sequence.dim_size(2) != 4 * units)
    return InvalidArgument("projected must be (B, T, 4U), got ", sequence.DebugString());
  const int64_t batch = sequence.dim_size(0), steps = sequence.dim_size(1);
  const TensorShape state({batch, units});
  if (state_a.shape() != state || state_b.shape() != state)
    return InvalidArgument("states must be (B, U) = ", state.DebugString(), ", got ",
                           state_a.shape().DebugString(), " and ",
                           state_b.shape().DebugString());
  if (mask.shape() != TensorShape({batch, steps}))
    return InvalidArgument("mask must be (B, T), got ", mask.shape().DebugString());
  return tensorflow::OkStatus();
}

// Inputs: projected, bias, kernel, h0, c0, mask (see the top of the file).
// Outputs: outputs (B, T, U) as Keras returns them, h_last and c_last
// (B, U); and, when `record` is set, what the backward op needs: gates
// (T, B, 4U) = the sigmoids of the scaled pre-activations and cells
// (T, B, U). Without `record` both are empty. h before each step, for
// dU = h_prev^T d_projected, is not recorded: it is the output of the step
// before (see TallOperand), which the gradients op reads instead.
// A masked step's gates are zeros (the backward op does not read them).
//
// Memory. The rows' slices come from and go to memory, and every cache
// line in flight holds one of the core's few fill buffers (about 10) until
// it arrives: with memory's latency that bounds the lines a core moves per
// microsecond, and a perf profile of this op put 28% of its samples on a
// burst of prefetches waiting for a buffer. So the op moves no line it can
// do without, and it spreads the prefetches of a row's next step over the
// sigmoids' loop, where they overlap with the arithmetic.
class LstmForwardOp : public OpKernel {
 public:
  explicit LstmForwardOp(OpKernelConstruction* ctx) : OpKernel(ctx) {
    OP_REQUIRES_OK(ctx, ctx->GetAttr("record", &record_));
  }

  void Compute(OpKernelContext* ctx) override {
    const Tensor& projected = ctx->input(0);
    const Tensor& bias = ctx->input(1);
    const Tensor& kernel = ctx->input(2);
    const Tensor& h0 = ctx->input(3);
    const Tensor& c0 = ctx->input(4);
    const Tensor& mask = ctx->input(5);
    OP_REQUIRES_OK(ctx, CheckShapes(projected.shape(), kernel, h0, c0, mask));
    OP_REQUIRES(ctx, bias.shape() == TensorShape({projected.dim_size(2)}),
                InvalidArgument("bias must be (4U,), got ", bias.shape().DebugString()));
    const int64_t batch = projected.dim_size(0), steps = projected.dim_size(1);
    const int64_t units = kernel.dim_size(0), gates = 4 * units;
    const int64_t recorded = record_ ? steps : 0;

    Tensor *outputs, *h_last, *c_last, *gate_record, *cell_record;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, {batch, steps, units}, &outputs));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(1, {batch, units}, &h_last));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(2, {batch, units}, &c_last));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(3, {recorded, batch, gates}, &gate_record));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(4, {recorded, batch, units}, &cell_record));

    const float* recurrent = kernel.flat<float>().data();
    const Eigen::VectorXf packed = PackPanels(
        units, gates, [&](int64_t k, int64_t j) { return recurrent[k * gates + j]; });
    const int64_t z_width = PaddedWidth(gates);
    const float* bias_data = bias.flat<float>().data();
    const float* x = projected.flat<float>().data();
    const float* m = mask.flat<float>().data();
    float* out = outputs->flat<float>().data();
    float* gate_out = gate_record->flat<float>().data();
    float* cell_out = cell_record->flat<float>().data();

    ForEachRowBlock(ctx, batch, [&](int64_t, int64_t first, int64_t rows) {
      if (rows == 0) return;
      Matrix h = ConstMatrixMap(h0.flat<float>().data() + first * units, rows, units);
      Matrix c = ConstMatrixMap(c0.flat<float>().data() + first * units, rows, units);
      Matrix z(rows, z_width);
      Eigen::ArrayXf s(gates), c_new(units), tanh_c(units);
      const Eigen::ArrayXf zeros = Eigen::ArrayXf::Zero(gates);  // gates >= units
      std::vector<bool> emitted(rows, false);
      for (int64_t t = 0; t < steps; ++t) {
        // The step's one product, (rows, U) x (U, 4U).
        MultiplyPacked(h.data(), units, rows, packed, units, z_width, z.data());
        for (int64_t r = 0; r < rows; ++r) {
          const int64_t row = first + r;
          const int64_t at = row * steps + t;  // (row, t) in (B, T, .)
          const int64_t record_at = t * batch + row;  // (t, row) in (T, B, .)
          const float* next = t + 1 < steps ? x + (at + 1) * gates : nullptr;  // row's next step
          if (m[at] > 0) {
            SigmoidOf(z.row(r).data(), x + at * gates, bias_data, s.data(), gates, next);
            const auto i = s.segment(0, units), f = s.segment(units, units);
            const auto o = s.segment(3 * units, units);
            const auto g = 2 * s.segment(2 * units, units) - 1;
            c_new = f * c.row(r).array().transpose() + i * g;
            c.row(r) = c_new.matrix().transpose();
            TanhOf(c_new.data(), tanh_c.data(), units);
            h.row(r) = (o * tanh_c).matrix().transpose();
            emitted[r] = true;
            if (record_) StreamCopy(s.data(), gate_out + record_at * gates, gates);
          } else {
            if (next != nullptr) Prefetch(next, gates);
            // A masked step carries h and c (Keras' rule); its gates are zeros.
            if (record_) StreamCopy(zeros.data(), gate_out + record_at * gates, gates);
          }
          if (record_) StreamCopy(c.row(r).data(), cell_out + record_at * units, units);
          StreamCopy(emitted[r] ? h.row(r).data() : zeros.data(), out + at * units, units);
        }
      }
      MatrixMap(h_last->flat<float>().data() + first * units, rows, units) = h;
      MatrixMap(c_last->flat<float>().data() + first * units, rows, units) = c;
    });
  }

 private:
  bool record_;
};

// Backprop through time for the forward op's records. Inputs: d_outputs
// (B, T, U), d_h_last, d_c_last (B, U), kernel, c0, mask, gates, cells. Outputs: d_projected (B, T, 4U) (the gradient of the scaled
// pre-activations, which is also the bias's per step), d_bias (4U), d_h0,
// d_c0 (B, U).
//
// Per step, with z' the scaled pre-activations and m the mask:
//   d_h     = d_h_carried + (an output was emitted ? d_outputs[t] : 0)
//   d_c_new = d_c_carried + d_h o (1 - tanh(c)^2)
//   d_z'    = [d_c_new g i', d_c_new c_prev f', d_c_new i (1 - g^2) / 2, d_h tanh(c) o'] m
//   d_h_carried <- m ? d_z' @ kernel^T : d_h;   d_c_carried <- m ? d_c_new f : d_c_carried
class LstmBackwardOp : public OpKernel {
 public:
  explicit LstmBackwardOp(OpKernelConstruction* ctx) : OpKernel(ctx) {}

  void Compute(OpKernelContext* ctx) override {
    const Tensor& d_outputs = ctx->input(0);
    const Tensor& d_h_last = ctx->input(1);
    const Tensor& d_c_last = ctx->input(2);
    const Tensor& kernel = ctx->input(3);
    const Tensor& c0 = ctx->input(4);
    const Tensor& mask = ctx->input(5);
    const Tensor& gate_record = ctx->input(6);
    const Tensor& cell_record = ctx->input(7);
    OP_REQUIRES(ctx, kernel.dims() == 2,
                InvalidArgument("kernel must be (U, 4U), got ", kernel.shape().DebugString()));
    const int64_t units = kernel.dim_size(0), gates = 4 * units;
    OP_REQUIRES(ctx, d_outputs.dims() == 3,
                InvalidArgument("d_outputs must be (B, T, U), got ",
                                d_outputs.shape().DebugString()));
    const int64_t batch = d_outputs.dim_size(0), steps = d_outputs.dim_size(1);
    OP_REQUIRES_OK(ctx, CheckShapes(TensorShape({batch, steps, gates}), kernel, d_h_last,
                                    d_c_last, mask));
    OP_REQUIRES(ctx, d_outputs.shape() == TensorShape({batch, steps, units}) &&
                         c0.shape() == d_h_last.shape() &&
                         gate_record.shape() == TensorShape({steps, batch, gates}) &&
                         cell_record.shape() == TensorShape({steps, batch, units}),
                InvalidArgument("d_outputs, c0, gates or cells do not match (B, T, U) = (",
                                batch, ", ", steps, ", ", units, ")"));

    Tensor *d_projected, *d_bias, *d_h0, *d_c0;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, {batch, steps, gates}, &d_projected));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(1, {gates}, &d_bias));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(2, d_h_last.shape(), &d_h0));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(3, d_c_last.shape(), &d_c0));

    // kernel^T, (4U, U), packed for the step's product d_z' @ kernel^T.
    const float* recurrent = kernel.flat<float>().data();
    const Eigen::VectorXf packed = PackPanels(
        gates, units, [&](int64_t k, int64_t j) { return recurrent[j * gates + k]; });
    const int64_t h_width = PaddedWidth(units);
    const float* m = mask.flat<float>().data();
    const float* d_out = d_outputs.flat<float>().data();
    const float* s_rec = gate_record.flat<float>().data();
    const float* c_rec = cell_record.flat<float>().data();
    float* d_z_out = d_projected->flat<float>().data();
    auto* pool = ctx->device()->tensorflow_cpu_worker_threads()->workers;
    Matrix d_bias_per_block = Matrix::Zero(pool->NumThreads() + 1, gates);

    const int64_t blocks = ForEachRowBlock(ctx, batch, [&](int64_t block, int64_t first,
                                                           int64_t rows) {
      if (rows == 0) return;
      Matrix d_h_carried = ConstMatrixMap(d_h_last.flat<float>().data() + first * units,
                                          rows, units);
      Matrix d_c_carried = ConstMatrixMap(d_c_last.flat<float>().data() + first * units,
                                          rows, units);
      const float* c_start = c0.flat<float>().data() + first * units;
      // This block's d_z' rows of step t, contiguous for the step's product
      // (in d_projected they are T * 4U apart), and that product.
      Matrix d_z_block(rows, gates), d_h_prev(rows, h_width);
      Eigen::ArrayXf d_h(units), d_c_new(units), tanh_c(units);
      const Eigen::ArrayXf zeros = Eigen::ArrayXf::Zero(gates);
      auto d_b = d_bias_per_block.row(block).array().transpose();
      // A row's outputs before its first real step are zeros: no gradient.
      const std::vector<int64_t> first_real = FirstRealSteps(m, first, rows, steps);
      for (int64_t t = steps - 1; t >= 0; --t) {
        for (int64_t r = 0; r < rows; ++r) {
          const int64_t row = first + r;
          const int64_t at = row * steps + t, record_at = t * batch + row;
          if (t > 0) {  // the row's slices of the step before, which comes next
            Prefetch(d_out + (at - 1) * units, units);
            Prefetch(s_rec + (record_at - batch) * gates, gates);
            if (t > 1) Prefetch(c_rec + (record_at - 2 * batch) * units, units);
          }
          d_h = d_h_carried.row(r).array().transpose();
          if (t >= first_real[r]) d_h += ConstVector(d_out + at * units, units);
          Vector d_z_row(d_z_block.data() + r * gates, gates);
          if (!(m[at] > 0)) {  // a masked step passed h and c through unchanged
            d_z_row.setZero();
            StreamCopy(zeros.data(), d_z_out + at * gates, gates);
            d_h_carried.row(r) = d_h.matrix().transpose();
            continue;
          }
          const ConstVector s(s_rec + record_at * gates, gates);
          const ConstVector c(c_rec + record_at * units, units);
          const ConstVector c_prev(t > 0 ? c_rec + (record_at - batch) * units
                                         : c_start + r * units, units);
          const auto i = s.segment(0, units), f = s.segment(units, units);
          const auto o = s.segment(3 * units, units);
          const auto g = 2 * s.segment(2 * units, units) - 1;
          TanhOf(c.data(), tanh_c.data(), units);
          d_c_new = d_c_carried.row(r).array().transpose() + d_h * o * (1 - tanh_c * tanh_c);
          d_z_row.segment(0, units) = d_c_new * g * i * (1 - i);
          d_z_row.segment(units, units) = d_c_new * c_prev * f * (1 - f);
          d_z_row.segment(2 * units, units) = d_c_new * 0.5f * i * (1 - g * g);
          d_z_row.segment(3 * units, units) = d_h * tanh_c * o * (1 - o);
          d_b += d_z_row;
          StreamCopy(d_z_row.data(), d_z_out + at * gates, gates);
          d_c_carried.row(r) = (d_c_new * f).matrix().transpose();
        }
        // (rows, 4U) x (4U, U)
        MultiplyPacked(d_z_block.data(), gates, rows, packed, gates, h_width, d_h_prev.data());
        for (int64_t r = 0; r < rows; ++r)
          if (m[(first + r) * steps + t] > 0) d_h_carried.row(r) = d_h_prev.row(r).head(units);
      }
      MatrixMap(d_h0->flat<float>().data() + first * units, rows, units) = d_h_carried;
      MatrixMap(d_c0->flat<float>().data() + first * units, rows, units) = d_c_carried;
    });
    Vector(d_bias->flat<float>().data(), gates) =
        d_bias_per_block.topRows(blocks).colwise().sum().array().transpose();
  }
};

// The gradients of the layer's inputs and weights from both ops' results
// (see StepGradients). Inputs: inputs (B, T, D) (the layer's, whose
// gate-scaled projections the forward op read), outputs (B, T, U), h0
// (B, U) and mask (B, T) (the forward op's, from which h before each step,
// h_prev, is read: see TallOperand), d_projected (B, T, 4U) (the backward
// op's output), kernel (D, 4U) (gate-scaled). Outputs: d_inputs (B, T, D) =
// d_projected kernel^T; d_kernel (D, 4U), the sum over steps of inputs^T
// d_projected; d_recurrent (U, 4U), the same of h_prev; both for the
// gate-scaled weights. The B*T steps are cut into one block per intra-op
// thread; each block adds its steps' products into accumulators of its own,
// which are summed at the end.
class LstmGradientsOp : public OpKernel {
 public:
  explicit LstmGradientsOp(OpKernelConstruction* ctx) : OpKernel(ctx) {}

  void Compute(OpKernelContext* ctx) override {
    const Tensor& inputs = ctx->input(0);
    const Tensor& outputs = ctx->input(1);
    const Tensor& h0 = ctx->input(2);
    const Tensor& mask = ctx->input(3);
    const Tensor& d_projected = ctx->input(4);
    const Tensor& kernel = ctx->input(5);
    OP_REQUIRES(ctx, inputs.dims() == 3 && outputs.dims() == 3 && d_projected.dims() == 3,
                InvalidArgument("inputs, outputs and d_projected must be (B, T, .), got ",
                                inputs.shape().DebugString(), ", ",
                                outputs.shape().DebugString(), " and ",
                                d_projected.shape().DebugString()));
    const int64_t batch = inputs.dim_size(0), steps = inputs.dim_size(1);
    const int64_t width = inputs.dim_size(2), units = outputs.dim_size(2);
    const int64_t gates = 4 * units;
    OP_REQUIRES(ctx, outputs.shape() == TensorShape({batch, steps, units}) &&
                         h0.shape() == TensorShape({batch, units}) &&
                         mask.shape() == TensorShape({batch, steps}) &&
                         d_projected.shape() == TensorShape({batch, steps, gates}) &&
                         kernel.shape() == TensorShape({width, gates}),
                InvalidArgument("for inputs (B, T, D) = ", inputs.shape().DebugString(),
                                ", outputs must be (B, T, U), h0 (B, U), mask (B, T), "
                                "d_projected (B, T, 4U) and kernel (D, 4U), got ",
                                outputs.shape().DebugString(), ", ", h0.shape().DebugString(),
                                ", ", mask.shape().DebugString(), ", ",
                                d_projected.shape().DebugString(), " and ",
                                kernel.shape().DebugString()));
    Tensor *d_inputs, *d_kernel, *d_recurrent;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, inputs.shape(), &d_inputs));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(1, {width, gates}, &d_kernel));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(2, {units, gates}, &d_recurrent));

    // kernel^T, (4U, D), packed for d_inputs' rows.
    const float* w = kernel.flat<float>().data();
    const Eigen::VectorXf kernel_t = PackPanels(
        gates, width, [&](int64_t k, int64_t j) { return w[j * gates + k]; });
    // One block's accumulators: d_kernel's rows then d_recurrent's, each
    // rounded up to whole tiles, PaddedWidth(4U) wide.
    auto tiled = [](int64_t rows) { return (rows + kTileRows - 1) / kTileRows * kTileRows; };
    const int64_t padded_gates = PaddedWidth(gates);
    const int64_t per_block = (tiled(width) + tiled(units)) * padded_gates;
    auto* pool = ctx->device()->tensorflow_cpu_worker_threads()->workers;
    Tensor sums;
    OP_REQUIRES_OK(ctx, ctx->allocate_temp(tensorflow::DT_FLOAT,
                                           {pool->NumThreads(), per_block}, &sums));
    float* sum_data = sums.flat<float>().data();
    const float* x = inputs.flat<float>().data();
    // A row without a real step reads h0 throughout.
    const std::vector<int64_t> first_real =
        FirstRealSteps(mask.flat<float>().data(), 0, batch, steps);
    TallOperand h_prev{outputs.flat<float>().data(), units, nullptr,
                       h0.flat<float>().data(), first_real.data(), steps};

    const int64_t blocks = ForEachRowBlock(ctx, batch * steps, [&](int64_t block,
                                                                   int64_t first,
                                                                   int64_t count) {
      float* own = sum_data + block * per_block;
      std::fill(own, own + per_block, 0.0f);
      TallOperand own_h_prev = h_prev;
      own_h_prev.product = own + tiled(width) * padded_gates;
      std::vector<TallOperand> operands = {{x, width, own}, own_h_prev};
      StepGradients(d_projected.flat<float>().data(), gates, first, first + count, operands,
                    kernel_t, width, d_inputs->flat<float>().data());
    });
    auto add_up = [&](Tensor* out, int64_t rows, int64_t offset) {
      MatrixMap result(out->flat<float>().data(), rows, gates);
      result.setZero();
      for (int64_t block = 0; block < blocks; ++block)
        result += ConstMatrixMap(sum_data + block * per_block + offset, rows, padded_gates)
                      .leftCols(gates);
    };
    add_up(d_kernel, width, 0);
    add_up(d_recurrent, units, tiled(width) * padded_gates);
  }
};

}  // namespace

REGISTER_OP("TextclfLstmForward")
    .Input("projected: float")
    .Input("bias: float")
    .Input("kernel: float")
    .Input("h0: float")
    .Input("c0: float")
    .Input("mask: float")
    .Output("outputs: float")
    .Output("h_last: float")
    .Output("c_last: float")
    .Output("gates: float")
    .Output("cells: float")
    .Attr("record: bool = true")
    .SetShapeFn([](InferenceContext* c) {
      ShapeHandle projected;
      TF_RETURN_IF_ERROR(c->WithRank(c->input(0), 3, &projected));
      DimensionHandle batch = c->Dim(projected, 0), steps = c->Dim(projected, 1);
      DimensionHandle units = c->Dim(c->input(2), 0);
      bool record;
      TF_RETURN_IF_ERROR(c->GetAttr("record", &record));
      DimensionHandle none = c->MakeDim(0);
      c->set_output(0, c->MakeShape({batch, steps, units}));
      c->set_output(1, c->MakeShape({batch, units}));
      c->set_output(2, c->MakeShape({batch, units}));
      c->set_output(3, c->MakeShape({record ? steps : none, batch, c->Dim(projected, 2)}));
      c->set_output(4, c->MakeShape({record ? steps : none, batch, units}));
      return tensorflow::OkStatus();
    });

REGISTER_OP("TextclfLstmBackward")
    .Input("d_outputs: float")
    .Input("d_h_last: float")
    .Input("d_c_last: float")
    .Input("kernel: float")
    .Input("c0: float")
    .Input("mask: float")
    .Input("gates: float")
    .Input("cells: float")
    .Output("d_projected: float")
    .Output("d_bias: float")
    .Output("d_h0: float")
    .Output("d_c0: float")
    .SetShapeFn([](InferenceContext* c) {
      ShapeHandle d_outputs;
      TF_RETURN_IF_ERROR(c->WithRank(c->input(0), 3, &d_outputs));
      DimensionHandle gates = c->Dim(c->input(3), 1);  // the kernel's 4U
      c->set_output(0, c->MakeShape({c->Dim(d_outputs, 0), c->Dim(d_outputs, 1), gates}));
      c->set_output(1, c->Vector(gates));
      c->set_output(2, c->input(1));
      c->set_output(3, c->input(2));
      return tensorflow::OkStatus();
    });

REGISTER_OP("TextclfLstmGradients")
    .Input("inputs: float")
    .Input("outputs: float")
    .Input("h0: float")
    .Input("mask: float")
    .Input("d_projected: float")
    .Input("kernel: float")
    .Output("d_inputs: float")
    .Output("d_kernel: float")
    .Output("d_recurrent: float")
    .SetShapeFn([](InferenceContext* c) {
      ShapeHandle inputs, outputs, h0, mask, d_projected, kernel;
      TF_RETURN_IF_ERROR(c->WithRank(c->input(0), 3, &inputs));
      TF_RETURN_IF_ERROR(c->WithRank(c->input(1), 3, &outputs));
      TF_RETURN_IF_ERROR(c->WithRank(c->input(2), 2, &h0));
      TF_RETURN_IF_ERROR(c->WithRank(c->input(3), 2, &mask));
      TF_RETURN_IF_ERROR(c->WithRank(c->input(4), 3, &d_projected));
      TF_RETURN_IF_ERROR(c->WithRank(c->input(5), 2, &kernel));
      DimensionHandle gates = c->Dim(d_projected, 2);
      c->set_output(0, inputs);
      c->set_output(1, c->Matrix(c->Dim(inputs, 2), gates));
      c->set_output(2, c->Matrix(c->Dim(outputs, 2), gates));
      return tensorflow::OkStatus();
    });

REGISTER_KERNEL_BUILDER(Name("TextclfLstmForward").Device(DEVICE_CPU), LstmForwardOp);
REGISTER_KERNEL_BUILDER(Name("TextclfLstmBackward").Device(DEVICE_CPU), LstmBackwardOp);
REGISTER_KERNEL_BUILDER(Name("TextclfLstmGradients").Device(DEVICE_CPU), LstmGradientsOp);

}  // namespace textclf
