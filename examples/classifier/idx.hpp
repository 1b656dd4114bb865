// A reader for IDX files (the MNIST / Fashion-MNIST format), gzip-compressed
// or not, via zlib. Every failure throws IdxError with the file's name and
// what is wrong with it, so that a missing or damaged data set is reported
// in one clear line instead of training on garbage.
//
// Format: a big-endian 32-bit magic number 0x0000TTDD (TT = 0x08 for
// unsigned bytes, DD = number of dimensions), DD big-endian 32-bit sizes,
// then the data, row-major. Images are 3-dimensional (count, rows, columns),
// labels 1-dimensional (count).
#pragma once

#include <zlib.h>

#include <cstdint>
#include <cstdio>
#include <stdexcept>
#include <string>
#include <vector>

namespace idx {

/// A file that cannot be read as the IDX data the caller asked for.
class IdxError : public std::runtime_error {
 public:
  IdxError(const std::string& path, const std::string& problem)
      : std::runtime_error("'" + path + "': " + problem), path_(path) {}
  /// The file concerned.
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

/// An image file: `count` images of rows x cols unsigned bytes, row-major.
struct Images {
  std::size_t count = 0;
  std::size_t rows = 0;
  std::size_t cols = 0;
  std::vector<std::uint8_t> pixels;
};

/// The whole decompressed content of a gzip file (a file that is not gzip
/// is read as it is, as zlib's gzread does).
inline std::vector<std::uint8_t> read_gzip(const std::string& path) {
  std::FILE* probe = std::fopen(path.c_str(), "rb");
  if (!probe) throw IdxError(path, "cannot open the file (missing or unreadable)");
  std::fclose(probe);
  gzFile file = gzopen(path.c_str(), "rb");
  if (!file) throw IdxError(path, "cannot open the file with zlib");
  std::vector<std::uint8_t> bytes;
  std::uint8_t chunk[1 << 16];
  for (;;) {
    const int n = gzread(file, chunk, sizeof chunk);
    if (n < 0) {
      int code = 0;
      const std::string why = gzerror(file, &code);
      gzclose(file);
      throw IdxError(path, "corrupt gzip data (zlib: " + why + ")");
    }
    if (n == 0) break;
    bytes.insert(bytes.end(), chunk, chunk + n);
  }
  // A gzip stream cut short reads as a clean end of file on some zlib
  // versions; gzerror still reports it.
  int code = 0;
  const std::string why = gzerror(file, &code);
  gzclose(file);
  if (code != Z_OK && code != Z_STREAM_END) throw IdxError(path, "corrupt gzip data (zlib: " + why + ")");
  return bytes;
}

namespace detail {

inline std::uint32_t big_endian_u32(const std::vector<std::uint8_t>& b, std::size_t at) {
  return (std::uint32_t{b[at]} << 24) | (std::uint32_t{b[at + 1]} << 16) | (std::uint32_t{b[at + 2]} << 8) |
         std::uint32_t{b[at + 3]};
}

inline std::string hex(std::uint32_t v) {
  char s[16];
  std::snprintf(s, sizeof s, "0x%08X", v);
  return s;
}

/// Checks magic and size, returns the dimension sizes.
inline std::vector<std::size_t> parse_header(const std::vector<std::uint8_t>& bytes, const std::string& path,
                                             std::uint32_t dims, const char* kind) {
  const std::uint32_t expected_magic = 0x00000800u | dims;
  const std::size_t header = 4 + 4 * std::size_t{dims};
  if (bytes.size() < 4) {
    throw IdxError(path, "truncated: " + std::to_string(bytes.size()) + " bytes, not even an IDX magic number");
  }
  const std::uint32_t magic = big_endian_u32(bytes, 0);
  if (magic != expected_magic) {
    throw IdxError(path, std::string("not an IDX ") + kind + " file: magic number " + hex(magic) + ", expected " +
                             hex(expected_magic));
  }
  if (bytes.size() < header) {
    throw IdxError(path, "truncated: " + std::to_string(bytes.size()) + " bytes, shorter than the " +
                             std::to_string(header) + "-byte IDX header");
  }
  std::vector<std::size_t> sizes;
  double total = 1.0;  // in double: a damaged header may claim more than 2^64 bytes
  for (std::uint32_t d = 0; d < dims; ++d) {
    sizes.push_back(big_endian_u32(bytes, 4 + 4 * std::size_t{d}));
    total *= static_cast<double>(sizes.back());
  }
  const double expected = static_cast<double>(header) + total;
  if (static_cast<double>(bytes.size()) != expected) {
    std::string shape;
    for (std::size_t s : sizes) shape += (shape.empty() ? "" : " x ") + std::to_string(s);
    char claimed[32];
    std::snprintf(claimed, sizeof claimed, "%.0f", expected);
    throw IdxError(path, std::string(static_cast<double>(bytes.size()) < expected ? "truncated" : "corrupt") +
                             ": the header says " + shape + " (" + claimed +
                             " bytes with the header) but the file holds " + std::to_string(bytes.size()) +
                             " bytes");
  }
  return sizes;
}

}  // namespace detail

/// Reads an IDX image file (magic 0x00000803).
inline Images read_images(const std::string& path) {
  std::vector<std::uint8_t> bytes = read_gzip(path);
  const std::vector<std::size_t> sizes = detail::parse_header(bytes, path, 3, "image");
  Images images;
  images.count = sizes[0];
  images.rows = sizes[1];
  images.cols = sizes[2];
  images.pixels.assign(bytes.begin() + 16, bytes.end());
  return images;
}

/// Reads an IDX label file (magic 0x00000801).
inline std::vector<std::uint8_t> read_labels(const std::string& path) {
  std::vector<std::uint8_t> bytes = read_gzip(path);
  detail::parse_header(bytes, path, 1, "label");
  return std::vector<std::uint8_t>(bytes.begin() + 8, bytes.end());
}

/// Prints why the Fashion-MNIST files could not be read and how to get them.
inline void report_missing_data(const char* program, const IdxError& e) {
  std::fprintf(stderr,
               "%s: cannot load Fashion-MNIST: %s\n"
               "Install the data set with `apt-get install dataset-fashion-mnist` (Debian/Ubuntu),\n"
               "or pass --data DIR with the four *-ubyte.gz files.\n",
               program, e.what());
}

}  // namespace idx
