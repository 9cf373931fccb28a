#include "client/text_table.h"

#include <gtest/gtest.h>

#include <sstream>
#include <string>

namespace bitsweep::client {
namespace {

TEST(TextTableTest, ColumnsArePaddedToTheWidestCell) {
  TextTable table({"id", "name", "n"});
  table.SetAlign(2, TextTable::Align::kRight);
  table.AddRow({"1", "short", "5"});
  table.AddRow({"12", "a longer name", "100"});
  EXPECT_EQ(table.ToString(),
            "id  name             n\n"
            "1   short            5\n"
            "12  a longer name  100\n");
}

TEST(TextTableTest, NoTrailingSpacesWhenTheLastColumnIsLeftAligned) {
  TextTable table({"a", "b"});
  table.AddRow({"x", ""});
  table.AddRow({"y", "long"});
  EXPECT_EQ(table.ToString(), "a  b\nx\ny  long\n");
}

TEST(TextTableTest, MissingCellsAreEmptyAndExtraCellsDropped) {
  TextTable table({"a", "b"});
  table.AddRow({"1"});
  table.AddRow({"2", "3", "4"});
  EXPECT_EQ(table.ToString(), "a  b\n1\n2  3\n");
}

TEST(TextTableTest, FitsWithinMaxWidth_IsUnchanged) {
  TextTable table({"id", "name"});
  table.AddRow({"1", "abcdef"});
  EXPECT_EQ(table.ToString(/*max_width=*/10), table.ToString());
}

TEST(TextTableTest, TooWide_TruncatesTheWidestColumnWithEllipsis) {
  TextTable table({"id", "name", "state"});
  table.AddRow({"1", "a-very-long-sweep-name", "done"});
  const std::string text = table.ToString(/*max_width=*/24);
  EXPECT_EQ(text,
            "id  name           state\n"
            "1   a-very-long-…  done\n");
  std::istringstream lines(text);
  for (std::string line; std::getline(lines, line);) EXPECT_LE(DisplayWidth(line), 24) << line;
}

TEST(TextTableTest, NarrowsSeveralColumnsButNotBelowAMinimum) {
  TextTable table({"aaaaaaaaaa", "bbbbbbbbbb"});
  table.AddRow({"1234567890", "1234567890"});
  // Both columns give way down to 4 columns each; the table then overflows rather than vanish.
  EXPECT_EQ(table.ToString(/*max_width=*/5), "aaa…  bbb…\n123…  123…\n");
}

TEST(TextTableTest, UnicodeCellsAreMeasuredInCodePoints) {
  TextTable table({"x", "y"});
  table.AddRow({"δδ", "1"});
  EXPECT_EQ(table.ToString(), "x   y\nδδ  1\n");
}

TEST(TruncateToWidthTest, CutsOnCodePointBoundaries) {
  EXPECT_EQ(TruncateToWidth("abcdef", 6), "abcdef");
  EXPECT_EQ(TruncateToWidth("abcdef", 4), "abc…");
  EXPECT_EQ(TruncateToWidth("δδδδδ", 3), "δδ…");
  EXPECT_EQ(TruncateToWidth("abc", 1), "…");
  EXPECT_EQ(TruncateToWidth("abc", 0), "");
  EXPECT_EQ(DisplayWidth("δ…a"), 3);
}

}  // namespace
}  // namespace bitsweep::client
