#include "worker/trainer/data/idx_loader.h"

#include <zlib.h>

#include <algorithm>
#include <fstream>
#include <limits>
#include <system_error>

#include "absl/strings/str_cat.h"

namespace bitsweep::trainer {
namespace {

namespace fs = std::filesystem;

constexpr uint32_t kImagesMagic = 0x00000803;
constexpr uint32_t kLabelsMagic = 0x00000801;
constexpr uint64_t kMaxSide = 4096;

// (This abseil's string_view is its own type, not std::string_view.)
absl::Status Corrupt(std::string_view name, absl::string_view what) {
  return absl::DataLossError(absl::StrCat(absl::string_view(name.data(), name.size()), ": ", what));
}

bool IsGzip(std::string_view bytes) {
  return bytes.size() >= 2 && static_cast<uint8_t>(bytes[0]) == 0x1F &&
         static_cast<uint8_t>(bytes[1]) == 0x8B;
}

// Inflates a gzip file (one or more members, as gzip(1) writes them) in memory.
absl::StatusOr<std::string> Gunzip(std::string_view bytes, std::string_view name,
                                   uint64_t max_bytes) {
  z_stream stream{};
  // 16 + MAX_WBITS: gzip wrapper only (header and CRC-32 / length trailer checked).
  if (inflateInit2(&stream, 16 + MAX_WBITS) != Z_OK) return Corrupt(name, "zlib init failed");
  struct End {
    z_stream* s;
    ~End() { inflateEnd(s); }
  } end{&stream};
  std::string out;
  size_t offset = 0;
  char buffer[1 << 16];
  while (true) {
    const size_t chunk = std::min<size_t>(bytes.size() - offset, std::numeric_limits<uInt>::max());
    stream.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(bytes.data() + offset));
    stream.avail_in = static_cast<uInt>(chunk);
    int rc = Z_OK;
    do {
      stream.next_out = reinterpret_cast<Bytef*>(buffer);
      stream.avail_out = sizeof(buffer);
      rc = inflate(&stream, Z_NO_FLUSH);
      if (rc == Z_DATA_ERROR || rc == Z_NEED_DICT || rc == Z_MEM_ERROR || rc == Z_STREAM_ERROR) {
        return Corrupt(name, absl::StrCat("corrupt gzip data (",
                                          stream.msg != nullptr ? stream.msg : "zlib error", ")"));
      }
      const size_t produced = sizeof(buffer) - stream.avail_out;
      if (out.size() + produced > max_bytes) {
        return Corrupt(name, absl::StrCat("decompresses to more than ", max_bytes, " bytes"));
      }
      out.append(buffer, produced);
      if (rc == Z_BUF_ERROR && stream.avail_in == 0) break;  // input used up
    } while (rc != Z_STREAM_END && (stream.avail_in > 0 || stream.avail_out == 0));
    offset += chunk - stream.avail_in;
    if (rc == Z_STREAM_END) {
      if (offset == bytes.size()) return out;
      // Another member follows (gzip -c a b > c), or garbage.
      if (!IsGzip(bytes.substr(offset))) {
        return Corrupt(name, absl::StrCat(bytes.size() - offset,
                                          " bytes of trailing garbage after the gzip data"));
      }
      if (inflateReset(&stream) != Z_OK) return Corrupt(name, "zlib reset failed");
      continue;
    }
    if (offset == bytes.size()) return Corrupt(name, "truncated gzip data");
  }
}

uint32_t BigEndian32(const uint8_t* p) {
  return (uint32_t{p[0]} << 24) | (uint32_t{p[1]} << 16) | (uint32_t{p[2]} << 8) | p[3];
}

struct Parsed {
  std::vector<uint64_t> dims;
  std::string_view payload;
};

// Decompresses if needed, checks the magic and the sizes, and returns the dimensions and data.
// `storage` keeps decompressed content alive.
absl::StatusOr<Parsed> ParseIdx(std::string_view bytes, std::string_view name, uint32_t magic,
                                uint64_t max_bytes, std::string* storage) {
  if (IsGzip(bytes)) {
    absl::StatusOr<std::string> inflated = Gunzip(bytes, name, max_bytes);
    if (!inflated.ok()) return inflated.status();
    *storage = std::move(*inflated);
    bytes = *storage;
  } else if (bytes.size() > max_bytes) {
    return Corrupt(name, absl::StrCat("larger than ", max_bytes, " bytes"));
  }
  const auto* data = reinterpret_cast<const uint8_t*>(bytes.data());
  if (bytes.empty()) return Corrupt(name, "empty file");
  if (bytes.size() < 4) {
    return Corrupt(name, absl::StrCat("truncated header (", bytes.size(), " bytes)"));
  }
  const uint32_t got = BigEndian32(data);
  if (got != magic) {
    return Corrupt(name, absl::StrCat("bad magic 0x", absl::Hex(got, absl::kZeroPad8),
                                      ", expected 0x", absl::Hex(magic, absl::kZeroPad8),
                                      magic == kImagesMagic ? " (IDX images)" : " (IDX labels)"));
  }
  const size_t ndims = magic & 0xFF;
  const size_t header = 4 + 4 * ndims;
  if (bytes.size() < header) {
    return Corrupt(
        name, absl::StrCat("truncated header (", bytes.size(), " bytes, expected ", header, ")"));
  }
  Parsed parsed;
  uint64_t total = 1;
  for (size_t i = 0; i < ndims; ++i) {
    const uint64_t d = BigEndian32(data + 4 + 4 * i);
    if (d == 0) return Corrupt(name, absl::StrCat("dimension ", i, " is zero"));
    total *= d;  // < 2^32 · 2^32: no overflow
    if (total > max_bytes) {
      return Corrupt(name, absl::StrCat("dimensions ask for more than ", max_bytes, " bytes"));
    }
    parsed.dims.push_back(d);
  }
  const uint64_t have = bytes.size() - header;
  if (have < total) {
    return Corrupt(name, absl::StrCat("truncated: ", have, " data bytes, the header says ", total));
  }
  if (have > total) return Corrupt(name, absl::StrCat(have - total, " trailing bytes"));
  parsed.payload = bytes.substr(header);
  return parsed;
}

}  // namespace

absl::StatusOr<IdxImages> ParseIdxImages(std::string_view bytes, std::string_view name,
                                         uint64_t max_bytes) {
  std::string storage;
  absl::StatusOr<Parsed> parsed = ParseIdx(bytes, name, kImagesMagic, max_bytes, &storage);
  if (!parsed.ok()) return parsed.status();
  const std::vector<uint64_t>& dims = parsed->dims;
  if (dims[1] > kMaxSide || dims[2] > kMaxSide) {
    return Corrupt(name, absl::StrCat("images of ", dims[1], "x", dims[2], " are larger than ",
                                      kMaxSide, "x", kMaxSide));
  }
  IdxImages images;
  images.count = static_cast<int64_t>(dims[0]);
  images.rows = static_cast<int>(dims[1]);
  images.cols = static_cast<int>(dims[2]);
  images.pixels.resize(parsed->payload.size());
  for (size_t i = 0; i < parsed->payload.size(); ++i) {
    images.pixels[i] = static_cast<float>(static_cast<uint8_t>(parsed->payload[i])) / 255.0f;
  }
  return images;
}

absl::StatusOr<std::vector<uint8_t>> ParseIdxLabels(std::string_view bytes, std::string_view name,
                                                    int num_classes, uint64_t max_bytes) {
  std::string storage;
  absl::StatusOr<Parsed> parsed = ParseIdx(bytes, name, kLabelsMagic, max_bytes, &storage);
  if (!parsed.ok()) return parsed.status();
  std::vector<uint8_t> labels(parsed->payload.begin(), parsed->payload.end());
  for (size_t i = 0; i < labels.size(); ++i) {
    if (labels[i] >= num_classes) {
      return Corrupt(name, absl::StrCat("label ", int{labels[i]}, " of example ", i,
                                        " is not below ", num_classes));
    }
  }
  return labels;
}

absl::StatusOr<std::string> ReadFileBytes(const fs::path& path, uint64_t max_bytes) {
  std::error_code ec;
  const fs::file_status status = fs::status(path, ec);
  if (!fs::exists(status))
    return absl::NotFoundError(absl::StrCat(path.string(), ": no such file"));
  if (!fs::is_regular_file(status)) return Corrupt(path.string(), "not a regular file");
  const uintmax_t size = fs::file_size(path, ec);
  if (ec) return Corrupt(path.string(), absl::StrCat("cannot read its size: ", ec.message()));
  if (size > max_bytes) {
    return Corrupt(path.string(), absl::StrCat("larger than ", max_bytes, " bytes"));
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) return Corrupt(path.string(), "cannot open");
  std::string bytes(size, '\0');
  if (!in.read(bytes.data(), static_cast<std::streamsize>(size))) {
    return Corrupt(path.string(), "read failed");
  }
  return bytes;
}

absl::StatusOr<IdxImages> ReadIdxImages(const fs::path& path) {
  absl::StatusOr<std::string> bytes = ReadFileBytes(path, kMaxIdxBytes);
  if (!bytes.ok()) return bytes.status();
  return ParseIdxImages(*bytes, path.string());
}

absl::StatusOr<std::vector<uint8_t>> ReadIdxLabels(const fs::path& path, int num_classes) {
  absl::StatusOr<std::string> bytes = ReadFileBytes(path, kMaxIdxBytes);
  if (!bytes.ok()) return bytes.status();
  return ParseIdxLabels(*bytes, path.string(), num_classes);
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
