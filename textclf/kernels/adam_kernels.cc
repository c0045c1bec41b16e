// textclf's native Adam step for a variable whose gradient arrives as rows:
// an embedding's (see textclf/fused_adam.py).
//
// Keras hands an embedding's gradient to the optimizer as tf.IndexedSlices: one
// row of values per looked-up token (N x D) and the token ids (N), with ids
// repeated as tokens repeat. TensorFlow's Adam kernel takes a dense gradient,
// so FusedAdam's TensorFlow path first clips the rows (Keras' clipnorm: four
// element-wise passes over them), then sums them into a zero-filled V x D
// tensor (UnsortedSegmentSum, on one thread), then runs ResourceApplyAdam over
// the whole variable. For bbc_rnn's embedding (20,000 x 128, about 14,000 rows
// a batch) the first two took longer than the update itself, at the end of the
// backward pass where nothing else runs beside them.
//
// This op does it in one pass over the variable. It sorts the rows' positions
// by id (a counting sort, O(N + V)); then the intra-op threads share the
// variable's rows in ranges, and for each chunk of a range the op sums the
// chunk's gradient rows into a small buffer (each row's values in their order
// in the input, clipped as Keras clips them) and applies Adam there to var, m
// and v. It is dense Adam, as ResourceApplyAdam: a row no token touched has a
// zero gradient, its moments decay and its value still moves.
//
//   alpha = lr sqrt(1 - beta2_power) / (1 - beta1_power)
//   m += (g - m)(1 - beta1);  v += (g^2 - v)(1 - beta2)
//   var -= alpha m / (sqrt(v) + epsilon)
//
// With clip_norm > 0 each value is clipped as tf.clip_by_norm clips the rows
// (Keras' clipnorm for an IndexedSlices gradient): value * clip_norm /
// max(||values||, clip_norm), the norm over all N rows as given (a repeated
// id's rows count separately), before the rows are summed.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "Eigen/Core"
#include "tensorflow/core/framework/op.h"
#include "tensorflow/core/framework/op_kernel.h"
#include "tensorflow/core/framework/resource_mgr.h"
#include "tensorflow/core/framework/resource_var.h"
#include "tensorflow/core/framework/shape_inference.h"
#include "tensorflow/core/platform/mutex.h"
#include "tensorflow/core/platform/threadpool.h"

namespace textclf {
namespace {

using tensorflow::DEVICE_CPU;
using tensorflow::OpKernel;
using tensorflow::OpKernelConstruction;
using tensorflow::OpKernelContext;
using tensorflow::Tensor;
using tensorflow::Var;
using tensorflow::errors::InvalidArgument;
using Rows = Eigen::Map<Eigen::ArrayXf>;
using ConstRows = Eigen::Map<const Eigen::ArrayXf>;

// Variable rows per chunk: the chunk's gradient buffer (16 KB at D = 128)
// stays in L1 while Adam reads it.
constexpr int64_t kChunkRows = 32;

// Holds the variables' mutexes, taken in address order (the order
// TensorFlow's own kernels use, so that no two ops deadlock).
class LockedVariables {
 public:
  explicit LockedVariables(const std::vector<Var*>& vars) {
    std::vector<tensorflow::mutex*> mutexes;
    for (Var* var : vars) mutexes.push_back(var->mu());
    std::sort(mutexes.begin(), mutexes.end());
    locks_.reserve(mutexes.size());
    for (tensorflow::mutex* mu : mutexes) locks_.emplace_back(*mu);
  }

 private:
  std::vector<tensorflow::mutex_lock> locks_;
};

// Makes a locked variable's buffer this op's alone: a buffer that a pending
// read still holds is copied first, as ResourceApplyAdam does
// (PrepareToUpdateVariable).
tensorflow::Status MakeWritable(OpKernelContext* ctx, Var* var) {
  Tensor* tensor = var->tensor();
  if (!var->copy_on_read_mode.load() && tensor->RefCountIsOne()) return tensorflow::OkStatus();
  Tensor copy;
  TF_RETURN_IF_ERROR(ctx->allocate_temp(tensor->dtype(), tensor->shape(), &copy));
  std::copy_n(tensor->flat<float>().data(), tensor->NumElements(), copy.flat<float>().data());
  *tensor = copy;
  return tensorflow::OkStatus();
}

float ScalarInput(OpKernelContext* ctx, int index) {
  return ctx->input(index).scalar<float>()();
}

// Inputs: var, m, v (resource variables, float32, the same shape (V, ...));
// beta1_power, beta2_power, lr, beta1, beta2, epsilon, clip_norm (float32
// scalars; clip_norm <= 0 means no clipping); values (N, ...) with var's
// trailing shape, and indices (N,), each in [0, V).
template <typename Index>
class ApplyAdamToRowsOp : public OpKernel {
 public:
  explicit ApplyAdamToRowsOp(OpKernelConstruction* ctx) : OpKernel(ctx) {}

  void Compute(OpKernelContext* ctx) override {
    for (int i = 3; i <= 9; ++i)
      OP_REQUIRES(ctx, tensorflow::TensorShapeUtils::IsScalar(ctx->input(i).shape()),
                  InvalidArgument("input ", i, " must be a scalar, got ",
                                  ctx->input(i).shape().DebugString()));
    const Tensor& values = ctx->input(10);
    const Tensor& indices = ctx->input(11);

    tensorflow::core::RefCountPtr<Var> var, m, v;
    OP_REQUIRES_OK(ctx, LookupResource(ctx, HandleFromInput(ctx, 0), &var));
    OP_REQUIRES_OK(ctx, LookupResource(ctx, HandleFromInput(ctx, 1), &m));
    OP_REQUIRES_OK(ctx, LookupResource(ctx, HandleFromInput(ctx, 2), &v));
    OP_REQUIRES(ctx, var.get() != m.get() && var.get() != v.get() && m.get() != v.get(),
                InvalidArgument("var, m and v must be three different variables"));
    const LockedVariables locked({var.get(), m.get(), v.get()});
    const Tensor& target = *var->tensor();
    for (Var* x : {var.get(), m.get(), v.get()}) {
      OP_REQUIRES(ctx, x->is_initialized,
                  InvalidArgument("var, m and v must be initialised"));
      OP_REQUIRES(ctx, x->tensor()->dtype() == tensorflow::DT_FLOAT &&
                           x->tensor()->shape() == target.shape(),
                  InvalidArgument("var, m and v must be float32 of one shape; got ",
                                  target.shape().DebugString(), " and ",
                                  x->tensor()->shape().DebugString()));
    }
    OP_REQUIRES(ctx, target.dims() >= 1,
                InvalidArgument("var must have at least one dimension"));
    const int64_t rows = target.dim_size(0);
    const int64_t n = indices.NumElements();
    tensorflow::TensorShape values_shape = target.shape();
    values_shape.set_dim(0, n);
    OP_REQUIRES(ctx, indices.dims() == 1 && values.shape() == values_shape,
                InvalidArgument("values must be ", values_shape.DebugString(),
                                " for indices (N,) = (", n, ",) and var ",
                                target.shape().DebugString(), "; got values ",
                                values.shape().DebugString(), " and indices ",
                                indices.shape().DebugString()));
    const int64_t width = rows == 0 ? 0 : target.NumElements() / rows;

    // The positions of each variable row's gradient rows, in input order:
    // order[starts[r], starts[r + 1]).
    const auto ids = indices.flat<Index>();
    std::vector<int64_t> starts(rows + 1, 0);
    for (int64_t i = 0; i < n; ++i) {
      const Index id = ids(i);
      OP_REQUIRES(ctx, id >= 0 && id < rows,
                  InvalidArgument("indices[", i, "] = ", id, " is not in [0, ", rows, ")"));
      ++starts[id + 1];
    }
    for (int64_t r = 0; r < rows; ++r) starts[r + 1] += starts[r];
    std::vector<int64_t> order(n), next(starts.begin(), starts.end() - 1);
    for (int64_t i = 0; i < n; ++i) order[next[ids(i)]++] = i;

    for (Var* x : {var.get(), m.get(), v.get()}) OP_REQUIRES_OK(ctx, MakeWritable(ctx, x));

    auto* pool = ctx->device()->tensorflow_cpu_worker_threads()->workers;
    const float* value_data = values.flat<float>().data();
    const float clip_norm = ScalarInput(ctx, 9);
    // Each value becomes value * clip_norm / divisor (tf.clip_by_norm's two
    // operations, in its order); divisor <= 0 means no clipping.
    float divisor = 0.0f;
    if (clip_norm > 0) {
      const int64_t blocks = std::max<int64_t>(1, std::min<int64_t>(pool->NumThreads(), n));
      std::vector<float> partial(blocks, 0.0f);
      pool->ParallelFor(blocks, Pool::SchedulingParams::Fixed(1),
                        [&](int64_t first, int64_t last) {
                          for (int64_t b = first; b < last; ++b) {
                            const int64_t from = n * b / blocks, to = n * (b + 1) / blocks;
                            partial[b] = ConstRows(value_data + from * width,
                                                   (to - from) * width).square().sum();
                          }
                        });
      float sum_of_squares = 0.0f;
      for (float p : partial) sum_of_squares += p;
      divisor = std::max(sum_of_squares > 0 ? std::sqrt(sum_of_squares) : 0.0f, clip_norm);
    }

    const float beta1 = ScalarInput(ctx, 6), beta2 = ScalarInput(ctx, 7);
    const float epsilon = ScalarInput(ctx, 8);
    // ResourceApplyAdam's step size, computed as it computes it.
    const float alpha = ScalarInput(ctx, 5) * std::sqrt(1.0f - ScalarInput(ctx, 4)) /
                        (1.0f - ScalarInput(ctx, 3));
    float* var_data = var->tensor()->flat<float>().data();
    float* m_data = m->tensor()->flat<float>().data();
    float* v_data = v->tensor()->flat<float>().data();

    // Rows [first, last) of the variable, a chunk at a time.
    auto update = [&](int64_t first, int64_t last) {
      std::vector<float> buffer(kChunkRows * width);
      for (int64_t chunk = first; chunk < last; chunk += kChunkRows) {
        const int64_t chunk_rows = std::min(kChunkRows, last - chunk);
        const int64_t size = chunk_rows * width, at = chunk * width;
        Rows g(buffer.data(), size);
        g.setZero();
        for (int64_t r = 0; r < chunk_rows; ++r) {
          Rows g_row(buffer.data() + r * width, width);
          for (int64_t k = starts[chunk + r]; k < starts[chunk + r + 1]; ++k) {
            const ConstRows value(value_data + order[k] * width, width);
            if (divisor > 0)
              g_row += value * clip_norm / divisor;
            else
              g_row += value;
          }
        }
        Rows w(var_data + at, size), m_rows(m_data + at, size), v_rows(v_data + at, size);
        m_rows += (g - m_rows) * (1.0f - beta1);
        v_rows += (g.square() - v_rows) * (1.0f - beta2);
        w -= (m_rows * alpha) / (v_rows.sqrt() + epsilon);
      }
    };
    // About 20 cycles per element: four streams in, three out, a square root
    // and a division.
    pool->ParallelFor(rows, Pool::SchedulingParams::Adaptive(20 * std::max<int64_t>(width, 1)),
                      update);
  }

 private:
  using Pool = tensorflow::thread::ThreadPool;
};

}  // namespace

REGISTER_OP("TextclfApplyAdamToRows")
    .Input("var: resource")
    .Input("m: resource")
    .Input("v: resource")
    .Input("beta1_power: float")
    .Input("beta2_power: float")
    .Input("lr: float")
    .Input("beta1: float")
    .Input("beta2: float")
    .Input("epsilon: float")
    .Input("clip_norm: float")
    .Input("values: float")
    .Input("indices: Tindices")
    .Attr("Tindices: {int32, int64}")
    .SetIsStateful()
    .SetShapeFn([](tensorflow::shape_inference::InferenceContext*) {
      return tensorflow::OkStatus();
    })
    .Doc("Dense Adam on a variable whose gradient is rows (values, indices); see the source.");

REGISTER_KERNEL_BUILDER(
    Name("TextclfApplyAdamToRows").Device(DEVICE_CPU).TypeConstraint<int32_t>("Tindices"),
    ApplyAdamToRowsOp<int32_t>);
REGISTER_KERNEL_BUILDER(
    Name("TextclfApplyAdamToRows").Device(DEVICE_CPU).TypeConstraint<int64_t>("Tindices"),
    ApplyAdamToRowsOp<int64_t>);

}  // namespace textclf
