// Command-line pieces shared by the examples (issue 24, item 8): number
// flags with range checks, a one-line progress bar, files written
// atomically. Header-only, C++17, no dependency.
//
// Used by the translation trainer. The two classifiers (examples/classifier,
// examples/torch_classifier) still carry their own copies of parse_number,
// usage_error and Progress; moving them onto this header is left to do.
#pragma once

#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <stdexcept>
#include <string>
#include <type_traits>

namespace examples {

/// Prints "<program>: <message>" and the usage text on stderr, exits 2.
[[noreturn]] inline void usage_error(const char* program, const char* usage, const std::string& message) {
  std::fprintf(stderr, "%s: %s\n%s", program, message.c_str(), usage);
  std::exit(2);
}

/// A flag's value as a number of type T in [low, high]; a usage error
/// otherwise (not a number, out of range, or not an integer for integral T).
template <typename T>
T parse_number(const char* program, const char* usage, const std::string& flag, const std::string& text, T low,
               T high) {
  char* end = nullptr;
  errno = 0;
  const double value = std::strtod(text.c_str(), &end);
  if (text.empty() || *end != '\0' || errno != 0 || !(value >= static_cast<double>(low)) ||
      !(value <= static_cast<double>(high))) {
    usage_error(program, usage,
                flag + " expects a number in [" + std::to_string(low) + ", " + std::to_string(high) + "], got '" +
                    text + "'");
  }
  if (std::is_integral_v<T> && value != std::floor(value)) {
    usage_error(program, usage, flag + " expects an integer, got '" + text + "'");
  }
  return static_cast<T>(value);
}

/// A one-line progress bar on `stream` (stderr by default), redrawn at most
/// five times a second; nothing when disabled.
class Progress {
 public:
  using Clock = std::chrono::steady_clock;
  explicit Progress(bool enabled, std::FILE* stream = stderr) : enabled_(enabled), stream_(stream) {}

  /// `unit` names what `done` counts per second ("tokens/s"); `extra` is
  /// appended as it is (e.g. "loss 4.21").
  void update(int epoch, int epochs, long done, long total, double seconds, double rate, const char* unit,
              const std::string& extra) {
    if (!enabled_) return;
    const auto now = Clock::now();
    if (done < total && now - last_ < std::chrono::milliseconds(200)) return;
    last_ = now;
    const double fraction = total > 0 ? static_cast<double>(done) / static_cast<double>(total) : 1.0;
    const double eta = fraction > 0 ? seconds * (1 - fraction) / fraction : 0.0;
    const int width = 30;
    const int filled = static_cast<int>(width * fraction);
    std::fprintf(stream_, "\repoch %d/%d [%s%s] %3d%%  %7.0f %s  %s  ETA %d:%02d ", epoch, epochs,
                 std::string(static_cast<std::size_t>(filled), '#').c_str(),
                 std::string(static_cast<std::size_t>(width - filled), '.').c_str(), static_cast<int>(100 * fraction),
                 rate, unit, extra.c_str(), static_cast<int>(eta) / 60, static_cast<int>(eta) % 60);
    std::fflush(stream_);
  }

  /// Erases the bar (ANSI "erase line").
  void finish() {
    if (enabled_) {
      std::fprintf(stream_, "\r\033[K");
      std::fflush(stream_);
    }
  }

 private:
  bool enabled_;
  std::FILE* stream_;
  Clock::time_point last_{};
};

/// Writes `content` to `path` through `path`.tmp and a rename, so that a
/// reader (or a run stopped midway) sees the old file or the new one, never
/// a part. Throws std::runtime_error when it cannot.
inline void write_file_atomically(const std::string& path, const std::string& content) {
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    out << content;
    out.flush();
    if (!out) throw std::runtime_error("cannot write '" + tmp + "'");
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) throw std::runtime_error("cannot rename '" + tmp + "' to '" + path + "'");
}

}  // namespace examples
