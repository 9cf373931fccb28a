#include "worker/trainer/data/idx_loader.h"

#include <zlib.h>

#include <memory>
#include <string>
#include <system_error>

#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"

namespace bitsweep::trainer {
namespace {

namespace fs = std::filesystem;

// Largest plausible file: guards against corrupt headers asking for absurd allocations.
constexpr uint64_t kMaxBytes = uint64_t{1} << 32;

absl::Status Corrupt(const fs::path& path, absl::string_view what) {
  return absl::DataLossError(absl::StrCat(path.string(), ": ", what));
}

// The whole (decompressed) content of a plain or gzip file.
absl::StatusOr<std::vector<uint8_t>> ReadAll(const fs::path& path) {
  std::error_code ec;
  if (!fs::is_regular_file(path, ec)) {
    return absl::NotFoundError(absl::StrCat(path.string(), ": no such file"));
  }
  std::unique_ptr<gzFile_s, int (*)(gzFile)> file(gzopen(path.c_str(), "rb"), &gzclose);
  if (file == nullptr) return Corrupt(path, "cannot open");
  std::vector<uint8_t> data;
  constexpr unsigned kChunk = 1 << 20;
  while (true) {
    const size_t old = data.size();
    if (old > kMaxBytes) return Corrupt(path, "larger than 4 GiB");
    data.resize(old + kChunk);
    const int got = gzread(file.get(), data.data() + old, kChunk);
    if (got < 0) {
      int errnum = 0;
      const char* message = gzerror(file.get(), &errnum);
      return Corrupt(path, absl::StrCat("read error: ", message));
    }
    data.resize(old + got);
    if (got == 0) break;
  }
  int errnum = Z_OK;
  const char* message = gzerror(file.get(), &errnum);
  if (errnum != Z_OK) return Corrupt(path, absl::StrCat("read error: ", message));
  return data;
}

uint32_t BigEndian32(const uint8_t* p) {
  return (uint32_t{p[0]} << 24) | (uint32_t{p[1]} << 16) | (uint32_t{p[2]} << 8) | p[3];
}

// Checks the magic and returns the dimension sizes; `payload` receives the data offset.
absl::StatusOr<std::vector<uint64_t>> ParseHeader(const fs::path& path,
                                                  const std::vector<uint8_t>& data, uint32_t magic,
                                                  size_t* payload) {
  const int ndims = static_cast<int>(magic & 0xFF);
  const size_t header = 4 + 4 * size_t(ndims);
  if (data.size() < 4) {
    return Corrupt(path, absl::StrCat("truncated header (", data.size(), " bytes)"));
  }
  const uint32_t got = BigEndian32(data.data());
  if (got != magic) {
    return Corrupt(path, absl::StrCat("bad magic 0x", absl::Hex(got, absl::kZeroPad8),
                                      ", expected 0x", absl::Hex(magic, absl::kZeroPad8)));
  }
  if (data.size() < header) {
    return Corrupt(path, absl::StrCat("truncated header (", data.size(), " bytes)"));
  }
  std::vector<uint64_t> dims;
  uint64_t total = 1;
  for (int i = 0; i < ndims; ++i) {
    const uint64_t d = BigEndian32(data.data() + 4 + 4 * i);
    if (d == 0) return Corrupt(path, absl::StrCat("dimension ", i, " is zero"));
    total *= d;
    if (total > kMaxBytes) return Corrupt(path, "dimensions are too large");
    dims.push_back(d);
  }
  if (data.size() - header < total) {
    return Corrupt(path, absl::StrCat("truncated: ", data.size() - header,
                                      " data bytes, header says ", total));
  }
  if (data.size() - header > total) {
    return Corrupt(path, absl::StrCat(data.size() - header - total, " trailing bytes"));
  }
  *payload = header;
  return dims;
}

}  // namespace

absl::StatusOr<IdxImages> ReadIdxImages(const fs::path& path) {
  auto data = ReadAll(path);
  if (!data.ok()) return data.status();
  size_t offset = 0;
  auto dims = ParseHeader(path, *data, 0x00000803, &offset);
  if (!dims.ok()) return dims.status();
  if ((*dims)[1] > 4096 || (*dims)[2] > 4096) return Corrupt(path, "images larger than 4096");
  IdxImages images;
  images.count = static_cast<int64_t>((*dims)[0]);
  images.rows = static_cast<int>((*dims)[1]);
  images.cols = static_cast<int>((*dims)[2]);
  const size_t n = data->size() - offset;
  images.pixels.resize(n);
  for (size_t i = 0; i < n; ++i) {
    images.pixels[i] = static_cast<float>((*data)[offset + i]) / 255.0f;
  }
  return images;
}

absl::StatusOr<std::vector<uint8_t>> ReadIdxLabels(const fs::path& path, int num_classes) {
  auto data = ReadAll(path);
  if (!data.ok()) return data.status();
  size_t offset = 0;
  auto dims = ParseHeader(path, *data, 0x00000801, &offset);
  if (!dims.ok()) return dims.status();
  std::vector<uint8_t> labels(data->begin() + static_cast<std::ptrdiff_t>(offset), data->end());
  for (size_t i = 0; i < labels.size(); ++i) {
    if (labels[i] >= num_classes) {
      return Corrupt(path, absl::StrCat("label ", int{labels[i]}, " of example ", i,
                                        " is not below ", num_classes));
    }
  }
  return labels;
}

absl::StatusOr<fs::path> FindIdxFile(const fs::path& dir, const std::string& base) {
  std::error_code ec;
  const fs::path plain = dir / base;
  if (fs::is_regular_file(plain, ec)) return plain;
  const fs::path gz = dir / (base + ".gz");
  if (fs::is_regular_file(gz, ec)) return gz;
  return absl::NotFoundError(
      absl::StrCat("neither ", plain.string(), " nor ", gz.string(), " exists"));
}

}  // namespace bitsweep::trainer
