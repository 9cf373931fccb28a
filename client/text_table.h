// A plain-text table for terminal output: a header row, columns padded to their widest cell
// and separated by two spaces, narrowed to fit a maximum width when the terminal is narrow.
#pragma once

#include <cstddef>
#include <ostream>
#include <string>
#include <string_view>
#include <vector>

namespace bitsweep::client {

class TextTable {
 public:
  enum class Align { kLeft, kRight };

  explicit TextTable(std::vector<std::string> headers);

  // Right-aligns (or left-aligns) column `column`; out-of-range columns are ignored.
  void SetAlign(size_t column, Align align);

  // Appends a row; missing cells are empty, extra cells are dropped.
  void AddRow(std::vector<std::string> cells);

  size_t num_rows() const { return rows_.size(); }

  // Writes the header and the rows, one line each, without trailing spaces. When `max_width` > 0
  // and the table is wider, the widest columns are narrowed (to no less than a few characters)
  // and their cells cut with "…" until it fits.
  void Render(std::ostream& out, int max_width = 0) const;
  std::string ToString(int max_width = 0) const;

 private:
  std::vector<int> ColumnWidths(int max_width) const;

  std::vector<std::string> headers_;
  std::vector<Align> align_;
  std::vector<std::vector<std::string>> rows_;
};

// Terminal columns taken by UTF-8 `text` (one per code point: our cells hold no wide characters).
int DisplayWidth(std::string_view text);

// `text` cut to at most `width` columns, ending in "…" when something was cut.
std::string TruncateToWidth(std::string_view text, int width);

}  // namespace bitsweep::client
