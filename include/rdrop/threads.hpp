/// \file
/// Thread count for the pair-parallel sweeps (OpenMP builds only: link
/// rdrop::openmp, or compile with -fopenmp).
#pragma once

#include "rdrop/detail/thread_count.hpp"

#include <stdexcept>
#include <string>

namespace rdrop {

/// Sets the number of threads every rdrop sweep uses when its call does not
/// say otherwise; 0 (the default) means OpenMP's own default. Without OpenMP
/// (the rdrop::rdrop target) every sweep is sequential and this setting is
/// kept but has no effect. It does not touch Eigen's own thread count
/// (Eigen::setNbThreads), which governs the products in your model.
/// Results are bitwise identical for any thread count.
inline void set_num_threads(int threads) {
  if (threads < 0) {
    throw std::invalid_argument("rdrop::set_num_threads: argument 'threads' is " +
                                std::to_string(threads) + "; expected >= 0");
  }
  detail::global_thread_count() = threads;
}

/// The global thread setting (0 = OpenMP's default).
inline int num_threads() { return detail::global_thread_count(); }

}  // namespace rdrop
