// The classifier example's IDX reader (examples/classifier/idx.hpp) on good,
// truncated, wrong-magic and damaged files: every failure names the file
// and says what is wrong. Built when zlib is found (examples/CMakeLists.txt
// links it into this binary and defines RDROP_TEST_IDX_READER).
#ifdef RDROP_TEST_IDX_READER

#include "../examples/classifier/idx.hpp"

#include <catch2/catch.hpp>

#include <zlib.h>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

namespace {

namespace fs = std::filesystem;
using Bytes = std::vector<std::uint8_t>;
using Catch::Matchers::Contains;

/// A fresh directory under the system's temporary directory, removed at
/// the end of the test.
class TempDir {
 public:
  TempDir() {
    const auto stamp = std::chrono::steady_clock::now().time_since_epoch().count();
    path_ = fs::temp_directory_path() / ("rdrop_test_idx_" + std::to_string(stamp));
    fs::create_directories(path_);
  }
  ~TempDir() {
    std::error_code ignored;
    fs::remove_all(path_, ignored);
  }
  std::string file(const std::string& name) const { return (path_ / name).string(); }

 private:
  fs::path path_;
};

void put_u32(Bytes& b, std::uint32_t v) {
  for (int shift = 24; shift >= 0; shift -= 8) b.push_back(static_cast<std::uint8_t>(v >> shift));
}

Bytes image_file(std::uint32_t count, std::uint32_t rows, std::uint32_t cols, std::size_t data_bytes) {
  Bytes b;
  put_u32(b, 0x00000803u);
  put_u32(b, count);
  put_u32(b, rows);
  put_u32(b, cols);
  for (std::size_t i = 0; i < data_bytes; ++i) b.push_back(static_cast<std::uint8_t>(i * 7));
  return b;
}

Bytes label_file(std::uint32_t count, std::size_t data_bytes) {
  Bytes b;
  put_u32(b, 0x00000801u);
  put_u32(b, count);
  for (std::size_t i = 0; i < data_bytes; ++i) b.push_back(static_cast<std::uint8_t>(i % 10));
  return b;
}

void write_gzip(const std::string& path, const Bytes& content) {
  gzFile f = gzopen(path.c_str(), "wb");
  REQUIRE(f != nullptr);
  REQUIRE(gzwrite(f, content.data(), static_cast<unsigned>(content.size())) == static_cast<int>(content.size()));
  REQUIRE(gzclose(f) == Z_OK);
}

void write_raw(const std::string& path, const Bytes& content) {
  std::ofstream out(path, std::ios::binary);
  out.write(reinterpret_cast<const char*>(content.data()), static_cast<std::streamsize>(content.size()));
}

Bytes read_raw(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return Bytes(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

}  // namespace

TEST_CASE("IDX reader reads gzip and plain files", "[idx]") {
  TempDir dir;
  const std::string images = dir.file("images.gz"), labels = dir.file("labels");
  write_gzip(images, image_file(2, 3, 4, 24));
  write_raw(labels, label_file(5, 5));  // zlib reads an uncompressed file as it is
  const idx::Images im = idx::read_images(images);
  CHECK(im.count == 2);
  CHECK(im.rows == 3);
  CHECK(im.cols == 4);
  REQUIRE(im.pixels.size() == 24);
  CHECK(im.pixels[5] == 35);
  const Bytes lb = idx::read_labels(labels);
  CHECK(lb == Bytes({0, 1, 2, 3, 4}));
}

TEST_CASE("IDX reader: a missing file is named", "[idx]") {
  TempDir dir;
  const std::string missing = dir.file("train-images-idx3-ubyte.gz");
  CHECK_THROWS_WITH(idx::read_images(missing), Contains(missing) && Contains("cannot open"));
}

TEST_CASE("IDX reader: a wrong magic number is reported with both values", "[idx]") {
  TempDir dir;
  const std::string labels_as_images = dir.file("labels.gz");
  write_gzip(labels_as_images, label_file(3, 3));
  CHECK_THROWS_WITH(idx::read_images(labels_as_images),
                    Contains(labels_as_images) && Contains("0x00000801") && Contains("expected 0x00000803"));
  const std::string text = dir.file("notes.txt");
  write_raw(text, Bytes{'h', 'e', 'l', 'l', 'o', ' ', 'w', 'o', 'r', 'l', 'd'});
  CHECK_THROWS_WITH(idx::read_labels(text), Contains(text) && Contains("not an IDX label file"));
  CHECK_THROWS_AS(idx::read_labels(text), idx::IdxError);
}

TEST_CASE("IDX reader: data shorter or longer than the header says", "[idx]") {
  TempDir dir;
  const std::string short_images = dir.file("short.gz");
  write_gzip(short_images, image_file(2, 3, 4, 10));
  CHECK_THROWS_WITH(idx::read_images(short_images),
                    Contains(short_images) && Contains("truncated") && Contains("2 x 3 x 4"));
  const std::string header_only = dir.file("header.gz");
  write_gzip(header_only, Bytes{0, 0, 8, 3, 0, 0});
  CHECK_THROWS_WITH(idx::read_images(header_only), Contains("truncated") && Contains("header"));
  const std::string long_labels = dir.file("long.gz");
  write_gzip(long_labels, label_file(3, 4));
  CHECK_THROWS_WITH(idx::read_labels(long_labels), Contains(long_labels) && Contains("corrupt"));
  const std::string huge = dir.file("huge.gz");
  write_gzip(huge, image_file(0xFFFFFFFFu, 0xFFFFFFFFu, 0xFFFFFFFFu, 4));
  CHECK_THROWS_WITH(idx::read_images(huge), Contains("truncated"));
}

TEST_CASE("IDX reader: a cut or damaged gzip stream", "[idx]") {
  TempDir dir;
  const std::string whole = dir.file("whole.gz");
  write_gzip(whole, image_file(10, 28, 28, 7840));
  Bytes compressed = read_raw(whole);
  REQUIRE(compressed.size() > 40);

  const std::string cut = dir.file("cut.gz");
  write_raw(cut, Bytes(compressed.begin(), compressed.begin() + static_cast<std::ptrdiff_t>(compressed.size() / 2)));
  // Either zlib notices the early end, or the IDX size check does.
  try {
    idx::read_images(cut);
    FAIL("a cut gzip file was accepted");
  } catch (const idx::IdxError& e) {
    const std::string what = e.what();
    CHECK_THAT(what, Contains(cut));
    CHECK((what.find("gzip") != std::string::npos || what.find("truncated") != std::string::npos));
  }

  const std::string damaged = dir.file("damaged.gz");
  Bytes bad = compressed;
  for (std::size_t i = 12; i < 40; ++i) bad[i] = static_cast<std::uint8_t>(bad[i] ^ 0x5A);
  write_raw(damaged, bad);
  CHECK_THROWS_WITH(idx::read_images(damaged), Contains(damaged));
}

#endif  // RDROP_TEST_IDX_READER
