// Global-memory buffers of the grid harnesses (emu_sample_tier.cpp, emu_gmm.cpp), as in emu_sweep.cpp: the data,
// 256-byte aligned like cudaMalloc's, sits between 64 KiB guard zones of 0xFF bytes (NaN in every float type, so a
// read past the end poisons the results); check() reports a write into a guard zone or into an input. Buffers
// start as 0xFF (NaN) too, so an output element the kernel leaves unwritten stays NaN.
#pragma once
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "emu_runtime.h"

namespace emu {

class Buffer {
 public:
  static constexpr size_t kGuard = 64 * 1024;

  Buffer(std::string name, size_t bytes)
      : name_(std::move(name)), bytes_(bytes), total_(kGuard + (bytes + 255) / 256 * 256 + kGuard) {
    base_ = static_cast<unsigned char*>(std::aligned_alloc(256, total_));
    if (base_ == nullptr) fail("out of memory for %s", name_.c_str());
    std::memset(base_, 0xFF, total_);
  }
  ~Buffer() { std::free(base_); }
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;

  template <typename T>
  T* as() {
    return reinterpret_cast<T*>(base_ + kGuard);
  }
  size_t bytes() const { return bytes_; }
  // Marks the current content as an input of the kernel (written by the host, checked unchanged by check()).
  void freeze() { copy_.assign(base_ + kGuard, base_ + kGuard + bytes_); }

  // Fills the buffer from DIR/NAME.bin; an input (the default) is kept to check that the kernel does not write it.
  void load(const std::string& dir, bool input = true) {
    const std::string path = dir + "/" + name_ + ".bin";
    FILE* f = std::fopen(path.c_str(), "rb");
    if (f == nullptr) fail("cannot open %s", path.c_str());
    const size_t got = std::fread(base_ + kGuard, 1, bytes_, f);
    const bool at_end = std::fgetc(f) == EOF;
    std::fclose(f);
    if (got != bytes_ || !at_end) fail("%s does not hold %zu bytes", path.c_str(), bytes_);
    if (input) copy_.assign(base_ + kGuard, base_ + kGuard + bytes_);
  }

  void save(const std::string& dir) const {
    const std::string path = dir + "/" + name_ + ".bin";
    FILE* f = std::fopen(path.c_str(), "wb");
    if (f == nullptr || std::fwrite(base_ + kGuard, 1, bytes_, f) != bytes_) fail("cannot write %s", path.c_str());
    std::fclose(f);
  }

  void check() const {
    const unsigned char* data = base_ + kGuard;
    for (size_t i = 0; i < kGuard; ++i) {
      if (base_[i] != 0xFF) fail("%s written %zu bytes before its start", name_.c_str(), kGuard - i);
    }
    for (size_t i = 0; i < total_ - kGuard - bytes_; ++i) {
      if (data[bytes_ + i] != 0xFF) fail("%s written %zu bytes past its end", name_.c_str(), i + 1);
    }
    if (!copy_.empty() && std::memcmp(copy_.data(), data, bytes_) != 0) fail("input %s was modified", name_.c_str());
  }

 private:
  std::string name_;
  size_t bytes_, total_;
  unsigned char* base_ = nullptr;
  std::vector<unsigned char> copy_;
};

inline long arg_int(char** argv, int i) {
  char* end = nullptr;
  const long v = std::strtol(argv[i], &end, 10);
  if (end == argv[i] || *end != '\0') fail("argument %d: not an integer: %s", i, argv[i]);
  return v;
}

inline double arg_double(char** argv, int i) {
  char* end = nullptr;
  const double v = std::strtod(argv[i], &end);
  if (end == argv[i] || *end != '\0') fail("argument %d: not a number: %s", i, argv[i]);
  return v;
}

}  // namespace emu
