// What the three examples (the Fashion-MNIST classifier with Eigen and with
// libtorch, the translation trainer) share instead of repeating it (issue
// 24, item 8): the flags they all take and one way of parsing a command line
// (`--flag value` or `--flag=value`, range-checked numbers, usage errors),
// a one-line progress bar, and the per-epoch CSV of results. Header-only,
// C++17, no dependency.
#pragma once

#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <functional>
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
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    std::remove(tmp.c_str());  // e.g. path is a directory: leave nothing behind
    throw std::runtime_error("cannot rename '" + tmp + "' to '" + path + "'");
  }
}

/// The flags every example takes, with the same meaning and ranges; each
/// program sets its own defaults (in its Settings, which derives from this)
/// before parsing.
struct CommonFlags {
  double alpha = 1.0;      ///< --alpha A: weight of R-Drop's KL term, in [0, 1e6]; 0 trains without it
  double dropout = 0.3;    ///< --dropout P, in [0, 0.99]
  int epochs = 10;         ///< --epochs N, in [1, 1e6]
  std::uint64_t seed = 1;  ///< --seed S, in [0, 2^52]
  int threads = 0;         ///< --threads T, in [0, 1024]; 0: the library's default
  std::string data;        ///< --data DIR
  std::string csv;         ///< --csv FILE: per-epoch results (CsvLog)
  int progress = -1;       ///< --progress / --no-progress; -1: when stderr is a terminal
  /// Whether the progress bar is drawn.
  bool show_progress() const { return progress == 1 || (progress == -1 && ::isatty(2) != 0); }
};

/// Parses argv[1..argc) into `common` and the program's own flags: `own_switch`
/// takes a flag without a value and says whether it knew it, `own_option` a
/// flag with its value. `--help` prints `usage` and exits 0; an unknown flag,
/// a missing value or a bad number is a usage error (exit 2).
inline void parse_arguments(int argc, char** argv, const char* program, const char* usage, CommonFlags& common,
                            const std::function<bool(const std::string&)>& own_switch,
                            const std::function<bool(const std::string&, const std::string&)>& own_option) {
  const auto number = [&](const std::string& flag, const std::string& text, double low, double high) {
    return parse_number<double>(program, usage, flag, text, low, high);
  };
  const auto integer = [&](const std::string& flag, const std::string& text, double low, double high) {
    return parse_number<std::int64_t>(program, usage, flag, text, static_cast<std::int64_t>(low),
                                      static_cast<std::int64_t>(high));
  };
  for (int i = 1; i < argc; ++i) {
    std::string flag = argv[i], value;
    if (flag == "--help" || flag == "-h") {
      std::fputs(usage, stdout);
      std::exit(0);
    }
    if (flag == "--progress" || flag == "--no-progress") {
      common.progress = flag == "--progress" ? 1 : 0;
      continue;
    }
    if (own_switch(flag)) continue;
    const std::size_t eq = flag.find('=');
    if (eq != std::string::npos) {
      value = flag.substr(eq + 1);
      flag = flag.substr(0, eq);
    } else if (i + 1 < argc) {
      value = argv[++i];
    } else {
      usage_error(program, usage, flag.rfind("--", 0) == 0 ? flag + " needs a value" : "unexpected argument '" + flag + "'");
    }
    if (flag == "--alpha") common.alpha = number(flag, value, 0, 1e6);
    else if (flag == "--dropout") common.dropout = number(flag, value, 0, 0.99);
    else if (flag == "--epochs") common.epochs = static_cast<int>(integer(flag, value, 1, 1e6));
    else if (flag == "--seed") common.seed = static_cast<std::uint64_t>(integer(flag, value, 0, 4503599627370496.0));
    else if (flag == "--threads") common.threads = static_cast<int>(integer(flag, value, 0, 1024));
    else if (flag == "--data") common.data = value;
    else if (flag == "--csv") common.csv = value;
    else if (!own_option(flag, value)) usage_error(program, usage, "unknown option " + flag);
  }
}

/// The per-epoch results as CSV: a header, then one row per epoch, each
/// flushed as it is written (a stopped run keeps its finished epochs).
/// With an empty path it writes nothing.
class CsvLog {
 public:
  /// Opens `path` for writing and writes `header` (column names, no newline);
  /// throws std::runtime_error when the file cannot be written.
  CsvLog(const std::string& path, const std::string& header) {
    if (path.empty()) return;
    file_ = std::fopen(path.c_str(), "w");
    if (!file_) throw std::runtime_error("cannot write '" + path + "'");
    row(header);
  }
  CsvLog(const CsvLog&) = delete;
  CsvLog& operator=(const CsvLog&) = delete;
  ~CsvLog() {
    if (file_) std::fclose(file_);
  }
  /// Appends one line (no newline in `line`).
  void row(const std::string& line) {
    if (!file_) return;
    std::fprintf(file_, "%s\n", line.c_str());
    std::fflush(file_);
  }

 private:
  std::FILE* file_ = nullptr;
};

/// printf into a std::string (for CsvLog rows).
template <typename... Args>
std::string format(const char* pattern, Args... args) {
  const int n = std::snprintf(nullptr, 0, pattern, args...);
  std::string out(static_cast<std::size_t>(n > 0 ? n : 0), '\0');
  if (n > 0) std::snprintf(out.data(), out.size() + 1, pattern, args...);
  return out;
}

}  // namespace examples
