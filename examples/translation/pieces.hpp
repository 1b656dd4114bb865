// Detokenization of SentencePiece ids from the model's vocabulary file
// (spm.vocab: one "piece<TAB>score" line per id), as SentencePiece 0.1.97's
// Decode does for the models prepare-data.sh trains: control pieces
// (<pad>, <s>, </s>) give nothing, <unk> gives " ⁇ ", "▁" (U+2581) becomes
// a space, and the "▁" that starts the first piece that gives text is
// dropped (the dummy prefix).
//
// Why not SentencePiece's C++ library: Debian's libsentencepiece.so.0
// carries its own copy of protobuf and exports its symbols; loaded into the
// process of libtorch, which links libprotobuf.so.32, the two collide and
// the program crashes at start-up, before main (protobuf's static
// initialization runs into sentencepiece's copy). The trainer reads the ids
// that prepare-data.sh wrote and decodes with this instead; the CTest
// checks it against `spm_decode` line for line.
#pragma once

#include <cstdint>
#include <fstream>
#include <stdexcept>
#include <string>
#include <vector>

namespace translation {

class Pieces {
 public:
  explicit Pieces(const std::string& vocab_path) {
    std::ifstream in(vocab_path);
    if (!in) {
      throw std::runtime_error("cannot read '" + vocab_path +
                               "': prepare the data with examples/translation/prepare-data.sh (and pass --data)");
    }
    for (std::string line; std::getline(in, line);) {
      const auto tab = line.find('\t');
      if (tab == std::string::npos) throw std::runtime_error("'" + vocab_path + "' has a line without a tab: " + line);
      const std::string piece = line.substr(0, tab);
      const auto id = static_cast<int64_t>(pieces_.size());
      if (piece == "<pad>") pad_ = id;
      else if (piece == "<unk>") unk_ = id;
      else if (piece == "<s>") bos_ = id;
      else if (piece == "</s>") eos_ = id;
      pieces_.push_back(piece);
    }
    if (pad_ < 0 || unk_ < 0 || bos_ < 0 || eos_ < 0) {
      throw std::runtime_error("'" + vocab_path + "' lacks one of <pad>, <unk>, <s>, </s> (train the tokenizer with "
                               "prepare-data.sh, which sets them)");
    }
  }

  int64_t size() const { return static_cast<int64_t>(pieces_.size()); }
  int64_t pad() const { return pad_; }
  int64_t bos() const { return bos_; }
  int64_t eos() const { return eos_; }

  std::string decode(const std::vector<int64_t>& ids) const {
    static const std::string space = "\xE2\x96\x81";  // U+2581
    std::string text;
    bool at_start = true;
    for (int64_t id : ids) {
      if (id < 0 || id >= size()) throw std::out_of_range("piece id " + std::to_string(id) + " outside the vocabulary");
      if (id == pad_ || id == bos_ || id == eos_) continue;
      std::string piece = id == unk_ ? " \xE2\x81\x87 " : pieces_[static_cast<std::size_t>(id)];  // " ⁇ "
      if (id != unk_) {
        if (at_start && piece.compare(0, space.size(), space) == 0) piece.erase(0, space.size());
        for (std::size_t at; (at = piece.find(space)) != std::string::npos;) piece.replace(at, space.size(), " ");
      }
      if (!piece.empty()) at_start = false;
      text += piece;
    }
    return text;
  }

 private:
  std::vector<std::string> pieces_;
  int64_t pad_ = -1, unk_ = -1, bos_ = -1, eos_ = -1;
};

}  // namespace translation
