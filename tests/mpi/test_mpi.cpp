// rdrop/mpi.hpp on a real MPI job (ctest runs it with mpiexec -n 1 and -n 2):
// counts, terms and gradients all-reduced equal the whole batch's, and
// errors become rdrop::mpi::Error naming the call. Plain checks, not Catch2:
// every rank must run every collective in the same order.
#include <rdrop/mpi.hpp>
#include <rdrop/rdrop.hpp>

#include <cmath>
#include <cstdio>
#include <string>

namespace {

int failures = 0;
int rank = 0, ranks = 1;

void check(bool ok, const char* what) {
  if (!ok) {
    std::fprintf(stderr, "rank %d: FAILED: %s\n", rank, what);
    ++failures;
  }
}

using Matrix = Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

// Every rank holds samples [lo, hi) of one global batch (interleaved copies);
// the whole-batch loss and gradient are computed by every rank for reference.
void shares_sum_to_the_whole() {
  const Eigen::Index samples = 9, classes = 5;
  std::srand(3);
  const Matrix x = Matrix::Random(2 * samples, classes) * 2.0;
  Eigen::VectorXi y(samples);
  for (Eigen::Index i = 0; i < samples; ++i) y(i) = static_cast<int>((i * 3) % classes);
  y(1) = y(2) = y(7) = -100;  // unlabeled, unevenly spread over the ranks
  rdrop::RDropOptions<double> o;
  o.alpha = 2;
  const rdrop::RDropLoss<double> loss(o);
  Matrix whole_grad;
  const double whole = loss.EvaluateWithGradient(x, y, whole_grad);

  const Eigen::Index lo = samples * rank / ranks, hi = samples * (rank + 1) / ranks;
  const auto xs = x.middleRows(2 * lo, 2 * (hi - lo));
  const auto ys = y.segment(lo, hi - lo);
  const rdrop::RDropCounts global = rdrop::mpi::AllReduce(loss.Count(xs, ys), MPI_COMM_WORLD);
  check(global == loss.Count(x, y), "all-reduced counts are the whole batch's");
  const rdrop::RDropTerms<double> terms = rdrop::mpi::AllReduce(loss.EvaluateTerms(xs, ys), MPI_COMM_WORLD);
  check(std::abs(loss.Normalize(terms) - whole) <= 1e-12 * std::abs(whole), "all-reduced terms normalize to the loss");

  Matrix grad;
  const double share = loss.WithCounts(global).EvaluateWithGradient(xs, ys, grad);
  check(std::abs(rdrop::mpi::AllReduceSum(share, MPI_COMM_WORLD) - whole) <= 1e-12 * std::abs(whole),
        "the shares sum to the loss");
  check((grad - whole_grad.middleRows(2 * lo, 2 * (hi - lo))).cwiseAbs().maxCoeff() <= 1e-15,
        "each rank's gradient is its rows of the whole");

  // A parameter gradient, summed in place: Σ_r (r + 1)·1.
  Eigen::MatrixXf g = Eigen::MatrixXf::Constant(3, 4, static_cast<float>(rank + 1));
  rdrop::mpi::AllReduceSum(g, MPI_COMM_WORLD);
  check(g.isConstant(static_cast<float>(ranks * (ranks + 1) / 2)), "AllReduceSum sums in place");
}

void errors_are_exceptions() {
  // A strided view cannot be reduced in place.
  Eigen::MatrixXd m = Eigen::MatrixXd::Zero(4, 4);
  auto block = m.block(0, 0, 2, 2);
  bool threw = false;
  try {
    rdrop::mpi::AllReduceSum(block, MPI_COMM_WORLD);
  } catch (const std::invalid_argument& e) {
    threw = std::string(e.what()).find("not contiguous") != std::string::npos;
  }
  check(threw, "a strided view throws std::invalid_argument");

  // An invalid communicator: MPI reports it on MPI_COMM_WORLD, whose handler
  // must return for this test (MPI's default aborts the job).
  MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
  threw = false;
  try {
    rdrop::mpi::AllReduce(rdrop::RDropCounts{}, MPI_COMM_NULL);
  } catch (const rdrop::mpi::Error& e) {
    threw = std::string(e.what()).find("rdrop::mpi: MPI_Comm_get_errhandler failed") == 0 && e.code() != MPI_SUCCESS;
    if (!threw) std::fprintf(stderr, "message: %s\n", e.what());
  }
  check(threw, "an MPI error becomes rdrop::mpi::Error naming the call");
  MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_ARE_FATAL);

  // The communicator's own handler is back after a successful call.
  MPI_Errhandler handler;
  rdrop::mpi::AllReduce(rdrop::RDropCounts{}, MPI_COMM_WORLD);
  MPI_Comm_get_errhandler(MPI_COMM_WORLD, &handler);
  check(handler == MPI_ERRORS_ARE_FATAL, "the error handler is restored");
  MPI_Errhandler_free(&handler);
}

}  // namespace

int main(int argc, char** argv) {
  MPI_Init(&argc, &argv);
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &ranks);
  shares_sum_to_the_whole();
  errors_are_exceptions();
  int total = failures;
  MPI_Allreduce(&failures, &total, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
  if (rank == 0) std::printf("%s on %d rank(s)\n", total == 0 ? "all passed" : "FAILED", ranks);
  MPI_Finalize();
  return total == 0 ? 0 : 1;
}
