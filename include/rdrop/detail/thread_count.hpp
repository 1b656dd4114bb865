// The global thread setting, below both rdrop/threads.hpp (which sets it)
// and the sweeps that read it.
#pragma once

namespace rdrop::detail {

/// 0: OpenMP's default.
inline int& global_thread_count() {
  static int count = 0;
  return count;
}

}  // namespace rdrop::detail
