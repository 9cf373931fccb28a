#include "client/text_table.h"

#include <algorithm>
#include <sstream>
#include <utility>

namespace bitsweep::client {
namespace {

constexpr int kColumnGap = 2;
// Columns are not narrowed below this (a cut cell keeps a few characters and the "…").
constexpr int kMinColumnWidth = 4;
constexpr std::string_view kEllipsis = "…";

bool IsContinuationByte(char c) { return (static_cast<unsigned char>(c) & 0xC0) == 0x80; }

}  // namespace

int DisplayWidth(std::string_view text) {
  int width = 0;
  for (char c : text) {
    if (!IsContinuationByte(c)) ++width;
  }
  return width;
}

std::string TruncateToWidth(std::string_view text, int width) {
  if (DisplayWidth(text) <= width) return std::string(text);
  if (width <= 0) return "";
  // Keep width-1 code points, then the ellipsis.
  int kept = 0;
  size_t end = 0;
  while (end < text.size()) {
    if (!IsContinuationByte(text[end])) {
      if (kept == width - 1) break;
      ++kept;
    }
    ++end;
  }
  return std::string(text.substr(0, end)) + std::string(kEllipsis);
}

TextTable::TextTable(std::vector<std::string> headers)
    : headers_(std::move(headers)), align_(headers_.size(), Align::kLeft) {}

void TextTable::SetAlign(size_t column, Align align) {
  if (column < align_.size()) align_[column] = align;
}

void TextTable::AddRow(std::vector<std::string> cells) {
  cells.resize(headers_.size());
  rows_.push_back(std::move(cells));
}

std::vector<int> TextTable::ColumnWidths(int max_width) const {
  std::vector<int> widths(headers_.size());
  for (size_t c = 0; c < headers_.size(); ++c) {
    widths[c] = DisplayWidth(headers_[c]);
    for (const auto& row : rows_) widths[c] = std::max(widths[c], DisplayWidth(row[c]));
  }
  if (max_width <= 0 || widths.empty()) return widths;
  int total = kColumnGap * static_cast<int>(widths.size() - 1);
  for (int w : widths) total += w;
  // Narrow the widest column one step at a time: wide free-text columns (names, paths) give
  // way first and narrow numeric ones stay readable.
  while (total > max_width) {
    auto widest = std::max_element(widths.begin(), widths.end());
    if (*widest <= kMinColumnWidth) break;
    --*widest;
    --total;
  }
  return widths;
}

void TextTable::Render(std::ostream& out, int max_width) const {
  const std::vector<int> widths = ColumnWidths(max_width);
  auto render_row = [&](const std::vector<std::string>& cells) {
    std::string line;
    for (size_t c = 0; c < cells.size(); ++c) {
      const std::string cell = TruncateToWidth(cells[c], widths[c]);
      const int padding = widths[c] - DisplayWidth(cell);
      const bool last = c + 1 == cells.size();
      if (align_[c] == Align::kRight) {
        line.append(padding, ' ');
        line += cell;
      } else {
        line += cell;
        if (!last) line.append(padding, ' ');
      }
      if (!last) line.append(kColumnGap, ' ');
    }
    // A last column that is empty in this row would leave trailing spaces behind.
    line.erase(line.find_last_not_of(' ') + 1);
    out << line << '\n';
  };
  render_row(headers_);
  for (const auto& row : rows_) render_row(row);
}

std::string TextTable::ToString(int max_width) const {
  std::ostringstream out;
  Render(out, max_width);
  return out.str();
}

}  // namespace bitsweep::client
