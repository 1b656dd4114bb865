/// \file
/// Data-parallel R-Drop over MPI: all-reduce the counts before the backward
/// pass (so that every worker's loss is its exact share of the global one),
/// and the gradients after it. An optional adapter: rdrop.hpp does not
/// include it; link rdrop::mpi (created when CMake finds MPI).
#pragma once

#include "rdrop/terms.hpp"

#include <Eigen/Core>
#include <mpi.h>

#include <algorithm>
#include <cstdint>
#include <limits>
#include <stdexcept>
#include <string>
#include <type_traits>

/// \namespace rdrop::mpi
/// Data-parallel R-Drop over MPI (`rdrop/mpi.hpp`, CMake target rdrop::mpi).
namespace rdrop::mpi {

/// An MPI call that failed: what() names the call and gives MPI's message.
class Error : public std::runtime_error {
 public:
  /// The failure of `call` with MPI error `code` (MPI_Error_string gives the message).
  Error(const std::string& call, int code) : std::runtime_error(message(call, code)), code_(code) {}
  /// The MPI error code the call returned.
  int code() const { return code_; }

 private:
  static std::string message(const std::string& call, int code) {
    char text[MPI_MAX_ERROR_STRING];
    int length = 0;
    if (MPI_Error_string(code, text, &length) != MPI_SUCCESS) length = 0;
    return "rdrop::mpi: " + call + " failed: " + (length > 0 ? std::string(text, static_cast<std::size_t>(length))
                                                             : "MPI error " + std::to_string(code));
  }
  int code_;
};

namespace detail {

/// While alive, errors on `comm` return codes instead of aborting the job
/// (MPI's default), so that they can become exceptions; the communicator's
/// own handler is put back afterwards.
class ReturnErrors {
 public:
  explicit ReturnErrors(MPI_Comm comm) : comm_(comm) {
    check(MPI_Comm_get_errhandler(comm_, &saved_), "MPI_Comm_get_errhandler");
    check(MPI_Comm_set_errhandler(comm_, MPI_ERRORS_RETURN), "MPI_Comm_set_errhandler");
  }
  ~ReturnErrors() {
    MPI_Comm_set_errhandler(comm_, saved_);
    MPI_Errhandler_free(&saved_);
  }
  ReturnErrors(const ReturnErrors&) = delete;
  ReturnErrors& operator=(const ReturnErrors&) = delete;

  static void check(int code, const char* call) {
    if (code != MPI_SUCCESS) throw Error(call, code);
  }

 private:
  MPI_Comm comm_;
  MPI_Errhandler saved_ = MPI_ERRHANDLER_NULL;
};

template <typename Scalar>
MPI_Datatype datatype() {
  static_assert(std::is_same_v<Scalar, float> || std::is_same_v<Scalar, double>,
                "rdrop::mpi: float or double");
  return std::is_same_v<Scalar, float> ? MPI_FLOAT : MPI_DOUBLE;
}

/// Σ over the ranks of `count` values at `data`, in place.
template <typename T>
void sum_in_place(T* data, std::int64_t count, MPI_Datatype type, MPI_Comm comm, const char* what) {
  const ReturnErrors errors(comm);
  // MPI counts are int: large buffers go in pieces.
  constexpr std::int64_t piece = std::numeric_limits<int>::max();
  for (std::int64_t done = 0; done < count; done += piece) {
    const auto n = static_cast<int>(std::min(piece, count - done));
    ReturnErrors::check(MPI_Allreduce(MPI_IN_PLACE, data + done, n, type, MPI_SUM, comm), what);
  }
}

}  // namespace detail

/// The counts of every rank's batch, summed over `comm` (collective: every
/// rank calls it). Pass the result to WithCounts before the backward pass:
/// each rank's loss and gradient are then its share of the global ones.
inline RDropCounts AllReduce(const RDropCounts& local, MPI_Comm comm) {
  std::int64_t v[3] = {local.labeled_rows, local.pairs, local.rows};
  detail::sum_in_place(v, 3, MPI_INT64_T, comm, "MPI_Allreduce (RDropCounts)");
  RDropCounts global;
  global.labeled_rows = static_cast<Eigen::Index>(v[0]);
  global.pairs = static_cast<Eigen::Index>(v[1]);
  global.rows = static_cast<Eigen::Index>(v[2]);
  return global;
}

/// The terms (sums and counts) of every rank's batch, summed over `comm`;
/// Normalize gives the global loss. The sums travel as double.
template <typename Scalar>
RDropTerms<Scalar> AllReduce(const RDropTerms<Scalar>& local, MPI_Comm comm) {
  double sums[2] = {static_cast<double>(local.task_sum), static_cast<double>(local.divergence_sum)};
  detail::sum_in_place(sums, 2, MPI_DOUBLE, comm, "MPI_Allreduce (RDropTerms sums)");
  RDropTerms<Scalar> global;
  global.task_sum = static_cast<Scalar>(sums[0]);
  global.divergence_sum = static_cast<Scalar>(sums[1]);
  global.counts = AllReduce(local.counts, comm);
  return global;
}

/// x ← Σ over the ranks of x, in place: gradients (a sum, not a mean, when
/// every rank's loss is its share under WithCounts) or a loss value. `x` is
/// a float or double Eigen matrix or array with contiguous storage (Matrix,
/// Array, a Map of contiguous memory), or a plain float or double.
template <typename Derived>
void AllReduceSum(Eigen::DenseBase<Derived>& x, MPI_Comm comm) {
  using Scalar = typename Derived::Scalar;
  static_assert((Derived::Flags & Eigen::DirectAccessBit) != 0,
                "rdrop::mpi::AllReduceSum: needs an object with storage (Matrix, Array, Map)");
  Derived& d = x.derived();
  const bool contiguous = d.size() <= 1 || (d.innerStride() == 1 && d.outerStride() == d.innerSize());
  if (!contiguous) {
    throw std::invalid_argument("rdrop::mpi::AllReduceSum: argument 'x' is not contiguous in memory (outer stride " +
                                std::to_string(d.outerStride()) + ", inner size " + std::to_string(d.innerSize()) +
                                "); pass a Matrix, an Array or a Map of contiguous memory");
  }
  detail::sum_in_place(d.data(), static_cast<std::int64_t>(d.size()), detail::datatype<Scalar>(), comm,
                       "MPI_Allreduce (AllReduceSum)");
}
/// The sum of `value` over the workers of `comm`.
template <typename Scalar, typename = std::enable_if_t<std::is_floating_point_v<Scalar>>>
Scalar AllReduceSum(Scalar value, MPI_Comm comm) {
  detail::sum_in_place(&value, 1, detail::datatype<Scalar>(), comm, "MPI_Allreduce (AllReduceSum)");
  return value;
}

}  // namespace rdrop::mpi
