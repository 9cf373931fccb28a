#include "client/sweep_file.h"

#include <yaml-cpp/eventhandler.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/status_macros.h"
#include "google/protobuf/struct.pb.h"

namespace bitsweep::client {
namespace {

using google::protobuf::Value;

const std::vector<std::string>& TopLevelKeys() {
  static const auto* keys = new std::vector<std::string>{"name", "base", "sweep", "priority"};
  return *keys;
}

const std::vector<std::string>& SweepKeys() {
  static const auto* keys = new std::vector<std::string>{"method", "seeds", "parameters"};
  return *keys;
}

const char* KindName(const YAML::Node& node) {
  switch (node.Type()) {
    case YAML::NodeType::Map:
      return "a map";
    case YAML::NodeType::Sequence:
      return "a list";
    case YAML::NodeType::Null:
      return "null";
    default:
      return "a scalar";
  }
}

// A scalar the user quoted (or tagged !!str) is text even when it looks like a number.
bool IsExplicitString(const YAML::Node& node) {
  return node.Tag() == "!" || node.Tag() == "tag:yaml.org,2002:str";
}

// A plain scalar is a number when all of it is one:
// [-+]?(digits[.digits]|.digits)([eE][-+]?digits)? Infinities and NaN are not accepted (no config
// field wants them; they would stay text).
std::optional<double> ParseNumber(absl::string_view text) {
  size_t i = 0;
  if (i < text.size() && (text[i] == '+' || text[i] == '-')) ++i;
  const size_t mantissa_start = i;
  size_t digits = 0;
  while (i < text.size() && std::isdigit(static_cast<unsigned char>(text[i]))) ++i, ++digits;
  if (i < text.size() && text[i] == '.') {
    ++i;
    while (i < text.size() && std::isdigit(static_cast<unsigned char>(text[i]))) ++i, ++digits;
  }
  if (digits == 0) return std::nullopt;
  if (i < text.size() && (text[i] == 'e' || text[i] == 'E')) {
    ++i;
    if (i < text.size() && (text[i] == '+' || text[i] == '-')) ++i;
    size_t exponent_digits = 0;
    while (i < text.size() && std::isdigit(static_cast<unsigned char>(text[i]))) {
      ++i, ++exponent_digits;
    }
    if (exponent_digits == 0) return std::nullopt;
  }
  if (i != text.size()) return std::nullopt;
  // from_chars accepts no leading '+'.
  const char* begin = text.data() + mantissa_start;
  double value = 0;
  auto [end, ec] = std::from_chars(begin, text.data() + text.size(), value);
  if (ec != std::errc() || end != text.data() + text.size() || !std::isfinite(value)) {
    return std::nullopt;
  }
  return text[0] == '-' ? -value : value;
}

// YAML 1.2 core schema spellings.
std::optional<bool> ParseBool(absl::string_view text) {
  if (text == "true" || text == "True" || text == "TRUE") return true;
  if (text == "false" || text == "False" || text == "FALSE") return false;
  return std::nullopt;
}

bool IsNullSpelling(absl::string_view text) {
  return text == "~" || text == "null" || text == "Null" || text == "NULL";
}

// Converts one document into a SweepSpec, remembering the source name for error messages.
class SweepSpecReader {
 public:
  explicit SweepSpecReader(absl::string_view source_name) : source_(source_name) {}

  absl::StatusOr<v1::SweepSpec> Read(const YAML::Node& root) {
    if (!root.IsMap()) {
      return Error(root,
                   absl::StrCat("expected a map with keys ", absl::StrJoin(TopLevelKeys(), ", "),
                                "; got ", KindName(root)));
    }
    v1::SweepSpec spec;
    RETURN_IF_ERROR(CheckKeys(root, "", TopLevelKeys()));
    bool has_name = false;
    for (const auto& entry : root) {
      const std::string key = entry.first.Scalar();
      const YAML::Node& value = entry.second;
      if (key == "name") {
        ASSIGN_OR_RETURN(std::string name, ReadString(value, "name"));
        if (name.empty()) return Error(value, "name: must not be empty");
        spec.set_name(std::move(name));
        has_name = true;
      } else if (key == "base") {
        if (value.IsNull()) continue;
        if (!value.IsMap())
          return Error(value, absl::StrCat("base: expected a map, got ", KindName(value)));
        ASSIGN_OR_RETURN(Value base, ToValue(value, "base"));
        *spec.mutable_base() = base.struct_value();
      } else if (key == "sweep") {
        RETURN_IF_ERROR(ReadSweep(value, spec));
      } else if (key == "priority") {
        ASSIGN_OR_RETURN(int32_t priority, ReadInt(value, "priority"));
        spec.set_priority(priority);
      }
    }
    if (!has_name) return Error(root, "name: required key is missing");
    return spec;
  }

 private:
  absl::Status Error(const YAML::Node& node, absl::string_view message) const {
    const YAML::Mark mark = node.Mark();
    if (mark.is_null()) return absl::InvalidArgumentError(absl::StrCat(source_, ": ", message));
    return absl::InvalidArgumentError(
        absl::StrCat(source_, ":", mark.line + 1, ":", mark.column + 1, ": ", message));
  }

  static std::string Join(absl::string_view prefix, absl::string_view key) {
    return prefix.empty() ? std::string(key) : absl::StrCat(prefix, ".", key);
  }

  // Every key of `map` must be a non-empty scalar, appear once, and (when `known` is non-empty)
  // be one of `known`.
  absl::Status CheckKeys(const YAML::Node& map, absl::string_view prefix,
                         const std::vector<std::string>& known) const {
    std::set<std::string> seen;
    for (const auto& entry : map) {
      const YAML::Node& key_node = entry.first;
      if (!key_node.IsScalar() || key_node.Scalar().empty()) {
        return Error(key_node, absl::StrCat(prefix.empty() ? "top level" : prefix,
                                            ": keys must be non-empty scalars"));
      }
      const std::string& key = key_node.Scalar();
      const std::string path = Join(prefix, key);
      if (!known.empty() && std::find(known.begin(), known.end(), key) == known.end()) {
        return Error(key_node,
                     absl::StrCat(path, ": unknown key (known: ", absl::StrJoin(known, ", "), ")"));
      }
      if (!seen.insert(key).second) return Error(key_node, absl::StrCat(path, ": duplicate key"));
    }
    return absl::OkStatus();
  }

  absl::StatusOr<std::string> ReadString(const YAML::Node& node, absl::string_view path) const {
    if (!node.IsScalar()) {
      return Error(node, absl::StrCat(path, ": expected a string, got ", KindName(node)));
    }
    return node.Scalar();
  }

  absl::StatusOr<int32_t> ReadInt(const YAML::Node& node, absl::string_view path) const {
    int32_t value = 0;
    if (!node.IsScalar() || !absl::SimpleAtoi(node.Scalar(), &value)) {
      return Error(node, absl::StrCat(path, ": expected an integer, got ",
                                      node.IsScalar() ? absl::StrCat("\"", node.Scalar(), "\"")
                                                      : std::string(KindName(node))));
    }
    return value;
  }

  absl::Status ReadSweep(const YAML::Node& sweep, v1::SweepSpec& spec) const {
    if (sweep.IsNull()) return absl::OkStatus();
    if (!sweep.IsMap())
      return Error(sweep, absl::StrCat("sweep: expected a map, got ", KindName(sweep)));
    RETURN_IF_ERROR(CheckKeys(sweep, "sweep", SweepKeys()));
    for (const auto& entry : sweep) {
      const std::string key = entry.first.Scalar();
      const YAML::Node& value = entry.second;
      if (key == "method") {
        ASSIGN_OR_RETURN(std::string method, ReadString(value, "sweep.method"));
        spec.set_method(std::move(method));
      } else if (key == "seeds") {
        ASSIGN_OR_RETURN(int32_t seeds, ReadInt(value, "sweep.seeds"));
        spec.set_seeds(seeds);
      } else if (key == "parameters") {
        RETURN_IF_ERROR(ReadParameters(value, spec));
      }
    }
    return absl::OkStatus();
  }

  absl::Status ReadParameters(const YAML::Node& parameters, v1::SweepSpec& spec) const {
    if (parameters.IsNull()) return absl::OkStatus();
    if (!parameters.IsMap()) {
      return Error(parameters, absl::StrCat("sweep.parameters: expected a map of dotted path to "
                                            "list of values, got ",
                                            KindName(parameters)));
    }
    RETURN_IF_ERROR(CheckKeys(parameters, "sweep.parameters", {}));
    for (const auto& entry : parameters) {
      const std::string path = entry.first.Scalar();
      const YAML::Node& values = entry.second;
      const std::string where = absl::StrCat("sweep.parameters.", path);
      if (!values.IsSequence()) {
        return Error(
            values,
            absl::StrCat(where, ": expected a list of values, got ", KindName(values), " (write [",
                         values.IsScalar() ? values.Scalar() : "...", "] for a single value)"));
      }
      if (values.size() == 0)
        return Error(values, absl::StrCat(where, ": the list of values is empty"));
      ASSIGN_OR_RETURN(Value list, ToValue(values, where));
      v1::SweepParameter* parameter = spec.add_parameters();
      parameter->set_path(path);
      *parameter->mutable_values() = list.list_value();
    }
    return absl::OkStatus();
  }

  // YAML node → protobuf Value, with the scalar rules documented in sweep_file.h.
  absl::StatusOr<Value> ToValue(const YAML::Node& node, absl::string_view path) const {
    Value value;
    switch (node.Type()) {
      case YAML::NodeType::Null:
        value.set_null_value(google::protobuf::NULL_VALUE);
        return value;
      case YAML::NodeType::Scalar: {
        const std::string& text = node.Scalar();
        if (IsExplicitString(node)) {
          value.set_string_value(text);
        } else if (std::optional<double> number = ParseNumber(text)) {
          value.set_number_value(*number);
        } else if (std::optional<bool> flag = ParseBool(text)) {
          value.set_bool_value(*flag);
        } else if (IsNullSpelling(text)) {
          value.set_null_value(google::protobuf::NULL_VALUE);
        } else {
          value.set_string_value(text);
        }
        return value;
      }
      case YAML::NodeType::Sequence: {
        google::protobuf::ListValue* list = value.mutable_list_value();
        for (size_t i = 0; i < node.size(); ++i) {
          ASSIGN_OR_RETURN(*list->add_values(), ToValue(node[i], absl::StrCat(path, "[", i, "]")));
        }
        return value;
      }
      case YAML::NodeType::Map: {
        RETURN_IF_ERROR(CheckKeys(node, path, {}));
        google::protobuf::Struct* fields = value.mutable_struct_value();
        for (const auto& entry : node) {
          const std::string& key = entry.first.Scalar();
          ASSIGN_OR_RETURN((*fields->mutable_fields())[key],
                           ToValue(entry.second, Join(path, key)));
        }
        return value;
      }
      case YAML::NodeType::Undefined:
        break;
    }
    return Error(node, absl::StrCat(path, ": undefined value"));
  }

  std::string source_;
};

// Consumes parser events without building nodes: counts a file's documents.
class DocumentCounter : public YAML::EventHandler {
 public:
  void OnDocumentStart(const YAML::Mark&) override {}
  void OnDocumentEnd() override {}
  void OnNull(const YAML::Mark&, YAML::anchor_t) override {}
  void OnAlias(const YAML::Mark&, YAML::anchor_t) override {}
  void OnScalar(const YAML::Mark&, const std::string&, YAML::anchor_t,
                const std::string&) override {}
  void OnSequenceStart(const YAML::Mark&, const std::string&, YAML::anchor_t,
                       YAML::EmitterStyle::value) override {}
  void OnSequenceEnd() override {}
  void OnMapStart(const YAML::Mark&, const std::string&, YAML::anchor_t,
                  YAML::EmitterStyle::value) override {}
  void OnMapEnd() override {}
};

}  // namespace

absl::StatusOr<v1::SweepSpec> ParseSweepYaml(absl::string_view text,
                                             absl::string_view source_name) {
  // yaml-cpp 0.7's LoadAll never returns on some malformed input (e.g. `"""",9`: the parser
  // keeps reporting an empty document without consuming a token, jbeder/yaml-cpp#1319, found
  // by fuzz/sweep_file_fuzzer), so documents are counted with a bound and only the first is
  // loaded.
  constexpr int kMaxDocuments = 16;
  std::vector<YAML::Node> documents;
  int document_count = 0;
  // yaml-cpp reports syntax errors by throwing; this is the boundary where they become values.
  try {
    std::istringstream stream{std::string(text)};
    YAML::Parser parser(stream);
    DocumentCounter counter;
    while (document_count <= kMaxDocuments && parser.HandleNextDocument(counter)) {
      ++document_count;
    }
    if (document_count > kMaxDocuments) {
      return absl::InvalidArgumentError(
          absl::StrCat(source_name, ": malformed YAML: more than ", kMaxDocuments,
                       " documents (is a quote or a bracket unbalanced?)"));
    }
    if (document_count > 0) documents.push_back(YAML::Load(std::string(text)));
  } catch (const YAML::Exception& e) {
    if (e.mark.is_null()) return absl::InvalidArgumentError(absl::StrCat(source_name, ": ", e.msg));
    return absl::InvalidArgumentError(
        absl::StrCat(source_name, ":", e.mark.line + 1, ":", e.mark.column + 1, ": ", e.msg));
  }
  if (documents.empty() || (document_count == 1 && documents[0].IsNull())) {
    return absl::InvalidArgumentError(
        absl::StrCat(source_name, ": empty sweep file (expected a map with name, base and sweep)"));
  }
  if (document_count > 1) {
    return absl::InvalidArgumentError(absl::StrCat(source_name,
                                                   ": expected one YAML document, found ",
                                                   document_count, " (separated by ---)"));
  }
  try {
    return SweepSpecReader(source_name).Read(documents[0]);
  } catch (const YAML::Exception& e) {
    // Not expected after a successful load, but a throw must not escape the parser.
    return absl::InvalidArgumentError(absl::StrCat(source_name, ": ", e.what()));
  }
}

absl::StatusOr<v1::SweepSpec> ParseSweepFile(const std::string& path) {
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec)) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": is a directory, not a sweep file"));
  }
  std::ifstream file(path, std::ios::binary);
  if (!file) {
    return absl::NotFoundError(
        absl::StrCat("cannot read sweep file ", path, ": ", std::strerror(errno)));
  }
  std::ostringstream text;
  text << file.rdbuf();
  if (file.bad()) {
    return absl::NotFoundError(absl::StrCat("cannot read sweep file ", path, ": read error"));
  }
  return ParseSweepYaml(text.str(), path);
}

}  // namespace bitsweep::client
