// Error reporting shared by every public entry point.
#pragma once

#include <Eigen/Core>

#include <sstream>
#include <stdexcept>
#include <string>

namespace rdrop::detail {

/// "[R x C]", the way every message in rdrop spells a shape.
inline std::string shape(Eigen::Index rows, Eigen::Index cols) {
  std::ostringstream s;
  s << '[' << rows << " x " << cols << ']';
  return s.str();
}

/// Throws std::invalid_argument("rdrop::<where>: <what>"). Every check runs
/// before any output is written, so a throw leaves outputs untouched.
[[noreturn]] inline void fail(const char* where, const std::string& what) {
  throw std::invalid_argument(std::string("rdrop::") + where + ": " + what);
}

}  // namespace rdrop::detail
