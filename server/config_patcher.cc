#include "server/config_patcher.h"

#include <google/protobuf/descriptor.h>
#include <google/protobuf/reflection.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdint>
#include <limits>
#include <memory>
#include <string_view>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "common/status_macros.h"

namespace bitsweep::server {
namespace {

using google::protobuf::Descriptor;
using google::protobuf::FieldDescriptor;
using google::protobuf::ListValue;
using google::protobuf::Message;
using google::protobuf::Reflection;
using google::protobuf::Struct;
using google::protobuf::Value;

std::string FormatNumber(double number) {
  if (std::isfinite(number) && std::floor(number) == number && std::fabs(number) < 1e18) {
    return std::to_string(static_cast<int64_t>(number));
  }
  char buffer[64];
  auto [end, ec] = std::to_chars(buffer, buffer + sizeof(buffer), number);
  if (ec != std::errc()) return std::to_string(number);
  return std::string(buffer, end);
}

std::string ValueText(const Value& value, bool quote_strings) {
  switch (value.kind_case()) {
    case Value::kNullValue:
      return "null";
    case Value::kNumberValue:
      return FormatNumber(value.number_value());
    case Value::kStringValue:
      return quote_strings ? absl::StrCat("\"", value.string_value(), "\"") : value.string_value();
    case Value::kBoolValue:
      return value.bool_value() ? "true" : "false";
    case Value::kListValue: {
      std::vector<std::string> parts;
      for (const Value& element : value.list_value().values()) {
        parts.push_back(ValueText(element, quote_strings));
      }
      return absl::StrCat("[", absl::StrJoin(parts, ", "), "]");
    }
    case Value::kStructValue: {
      std::vector<std::string> parts;
      for (const auto& [key, element] : value.struct_value().fields()) {
        parts.push_back(absl::StrCat(key, ": ", ValueText(element, quote_strings)));
      }
      return absl::StrCat("{", absl::StrJoin(parts, ", "), "}");
    }
    default:
      return "(empty)";
  }
}

absl::Status TypeError(const std::string& path, const Value& value, const char* expected) {
  return absl::InvalidArgumentError(
      absl::StrCat(path, ": value ", ValueErrorText(value), " is not ", expected));
}

std::string KnownFields(const Descriptor& descriptor) {
  std::vector<std::string> names;
  for (int i = 0; i < descriptor.field_count(); ++i) names.push_back(descriptor.field(i)->name());
  return absl::StrJoin(names, ", ");
}

absl::Status UnknownField(const std::string& path, const Descriptor& descriptor) {
  return absl::InvalidArgumentError(
      absl::StrCat(path, ": unknown field (known: ", KnownFields(descriptor), ")"));
}

// A number from a number or a numeric string (YAML clients may send either).
bool AsDouble(const Value& value, double* out) {
  if (value.kind_case() == Value::kNumberValue) {
    *out = value.number_value();
    return true;
  }
  if (value.kind_case() != Value::kStringValue) return false;
  const std::string& text = value.string_value();
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), *out);
  return ec == std::errc() && end == text.data() + text.size() && !text.empty();
}

// An integer within [min, max] from an integral number or an integer string.
template <typename Int>
absl::Status AsInteger(const std::string& path, const Value& value, const char* type_name,
                       Int* out) {
  if (value.kind_case() == Value::kStringValue) {
    const std::string& text = value.string_value();
    auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), *out);
    if (ec == std::errc::result_out_of_range) {
      return absl::InvalidArgumentError(absl::StrCat(path, ": value ", ValueErrorText(value),
                                                     " is out of range for ", type_name));
    }
    if (ec != std::errc() || end != text.data() + text.size() || text.empty()) {
      return TypeError(path, value, "an integer");
    }
    return absl::OkStatus();
  }
  if (value.kind_case() != Value::kNumberValue) return TypeError(path, value, "an integer");
  double number = value.number_value();
  if (!std::isfinite(number) || std::floor(number) != number) {
    return TypeError(path, value, "an integer");
  }
  // Compare in double: the limits of 64-bit types are exact powers of two there.
  double low = static_cast<double>(std::numeric_limits<Int>::min());
  double high = std::ldexp(1.0, std::numeric_limits<Int>::digits);  // exclusive
  if (number < low || number >= high) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": value ", ValueErrorText(value), " is out of range for ", type_name));
  }
  *out = static_cast<Int>(number);
  return absl::OkStatus();
}

absl::Status SetMessage(const Value& value, const std::string& path, Message* message) {
  if (value.kind_case() != Value::kStructValue) return TypeError(path, value, "a map");
  return ApplyStruct(value.struct_value(), path, message);
}

// Converts `value` for a singular field, or an element of a repeated one (`repeated`: add).
absl::Status SetScalar(const FieldDescriptor& field, const Value& value, const std::string& path,
                       bool repeated, Message* message) {
  const Reflection& reflection = *message->GetReflection();
  switch (field.cpp_type()) {
    case FieldDescriptor::CPPTYPE_INT32: {
      int32_t number = 0;
      RETURN_IF_ERROR(AsInteger(path, value, "int32", &number));
      repeated ? reflection.AddInt32(message, &field, number)
               : reflection.SetInt32(message, &field, number);
      return absl::OkStatus();
    }
    case FieldDescriptor::CPPTYPE_INT64: {
      int64_t number = 0;
      RETURN_IF_ERROR(AsInteger(path, value, "int64", &number));
      repeated ? reflection.AddInt64(message, &field, number)
               : reflection.SetInt64(message, &field, number);
      return absl::OkStatus();
    }
    case FieldDescriptor::CPPTYPE_UINT32: {
      uint32_t number = 0;
      RETURN_IF_ERROR(AsInteger(path, value, "uint32", &number));
      repeated ? reflection.AddUInt32(message, &field, number)
               : reflection.SetUInt32(message, &field, number);
      return absl::OkStatus();
    }
    case FieldDescriptor::CPPTYPE_UINT64: {
      uint64_t number = 0;
      RETURN_IF_ERROR(AsInteger(path, value, "uint64", &number));
      repeated ? reflection.AddUInt64(message, &field, number)
               : reflection.SetUInt64(message, &field, number);
      return absl::OkStatus();
    }
    case FieldDescriptor::CPPTYPE_DOUBLE:
    case FieldDescriptor::CPPTYPE_FLOAT: {
      double number = 0;
      if (!AsDouble(value, &number)) return TypeError(path, value, "a number");
      if (field.cpp_type() == FieldDescriptor::CPPTYPE_DOUBLE) {
        repeated ? reflection.AddDouble(message, &field, number)
                 : reflection.SetDouble(message, &field, number);
      } else {
        repeated ? reflection.AddFloat(message, &field, static_cast<float>(number))
                 : reflection.SetFloat(message, &field, static_cast<float>(number));
      }
      return absl::OkStatus();
    }
    case FieldDescriptor::CPPTYPE_BOOL: {
      bool flag = false;
      if (value.kind_case() == Value::kBoolValue) {
        flag = value.bool_value();
      } else if (value.kind_case() == Value::kStringValue &&
                 (value.string_value() == "true" || value.string_value() == "false")) {
        flag = value.string_value() == "true";
      } else {
        return TypeError(path, value, "a boolean");
      }
      repeated ? reflection.AddBool(message, &field, flag)
               : reflection.SetBool(message, &field, flag);
      return absl::OkStatus();
    }
    case FieldDescriptor::CPPTYPE_STRING: {
      if (value.kind_case() != Value::kStringValue) return TypeError(path, value, "a string");
      repeated ? reflection.AddString(message, &field, value.string_value())
               : reflection.SetString(message, &field, value.string_value());
      return absl::OkStatus();
    }
    case FieldDescriptor::CPPTYPE_ENUM: {
      const google::protobuf::EnumValueDescriptor* enum_value = nullptr;
      if (value.kind_case() == Value::kStringValue) {
        enum_value = field.enum_type()->FindValueByName(value.string_value());
      }
      if (enum_value == nullptr) {
        std::vector<std::string> names;
        for (int i = 0; i < field.enum_type()->value_count(); ++i) {
          names.push_back(field.enum_type()->value(i)->name());
        }
        return absl::InvalidArgumentError(absl::StrCat(path, ": value ", ValueErrorText(value),
                                                       " is not one of ",
                                                       absl::StrJoin(names, ", ")));
      }
      repeated ? reflection.AddEnum(message, &field, enum_value)
               : reflection.SetEnum(message, &field, enum_value);
      return absl::OkStatus();
    }
    case FieldDescriptor::CPPTYPE_MESSAGE: {
      Message* child = repeated ? reflection.AddMessage(message, &field)
                                : reflection.MutableMessage(message, &field);
      return SetMessage(value, path, child);
    }
  }
  return absl::InternalError(absl::StrCat(path, ": unsupported field type"));
}

absl::Status SetField(const FieldDescriptor& field, const Value& value, const std::string& path,
                      Message* message) {
  if (value.kind_case() == Value::kNullValue) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": null is not allowed (leave it out)"));
  }
  if (field.is_map()) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": map fields are not supported"));
  }
  if (!field.is_repeated()) return SetScalar(field, value, path, /*repeated=*/false, message);
  if (value.kind_case() != Value::kListValue) return TypeError(path, value, "a list");
  // Lists replace the repeated field wholesale; build into a copy so that a bad element
  // leaves the message untouched.
  std::unique_ptr<Message> scratch(message->New());
  scratch->CopyFrom(*message);
  scratch->GetReflection()->ClearField(scratch.get(), &field);
  const ListValue& list = value.list_value();
  for (int i = 0; i < list.values_size(); ++i) {
    RETURN_IF_ERROR(SetScalar(field, list.values(i), absl::StrCat(path, "[", i, "]"),
                              /*repeated=*/true, scratch.get()));
  }
  message->GetReflection()->Swap(message, scratch.get());
  return absl::OkStatus();
}

}  // namespace

absl::Status ApplyStruct(const Struct& patch, const std::string& path, Message* message) {
  const Descriptor& descriptor = *message->GetDescriptor();
  // Struct fields are a map: sort the keys so the first error reported is deterministic.
  std::vector<std::string> keys;
  for (const auto& [key, unused] : patch.fields()) keys.push_back(key);
  std::sort(keys.begin(), keys.end());
  for (const std::string& key : keys) {
    std::string field_path = path.empty() ? key : absl::StrCat(path, ".", key);
    const FieldDescriptor* field = descriptor.FindFieldByName(key);
    if (field == nullptr) return UnknownField(field_path, descriptor);
    RETURN_IF_ERROR(SetField(*field, patch.fields().at(key), field_path, message));
  }
  return absl::OkStatus();
}

absl::Status SetFieldAtPath(const std::string& field_path, const Value& value,
                            const std::string& error_prefix, Message* message) {
  std::string full_path = absl::StrCat(error_prefix, field_path);
  std::vector<std::string> segments = absl::StrSplit(field_path, '.');
  Message* current = message;
  std::string walked;
  for (size_t i = 0; i < segments.size(); ++i) {
    const std::string& segment = segments[i];
    const Descriptor& descriptor = *current->GetDescriptor();
    walked = i == 0 ? segment : absl::StrCat(walked, ".", segment);
    if (segment.empty()) {
      return absl::InvalidArgumentError(absl::StrCat(full_path, ": empty path segment"));
    }
    const FieldDescriptor* field = descriptor.FindFieldByName(segment);
    if (field == nullptr) {
      if (i + 1 == segments.size()) return UnknownField(full_path, descriptor);
      return absl::InvalidArgumentError(absl::StrCat(full_path, ": unknown field '", segment,
                                                     "' (known: ", KnownFields(descriptor), ")"));
    }
    if (i + 1 == segments.size()) return SetField(*field, value, full_path, current);
    if (field->cpp_type() != FieldDescriptor::CPPTYPE_MESSAGE || field->is_repeated()) {
      return absl::InvalidArgumentError(
          absl::StrCat(full_path, ": '", walked, "' is not a message, so it has no fields"));
    }
    current = current->GetReflection()->MutableMessage(current, field);
  }
  return absl::InvalidArgumentError(absl::StrCat(full_path, ": empty path"));
}

std::string ValueDisplayText(const Value& value) { return ValueText(value, false); }

std::string ValueErrorText(const Value& value) { return ValueText(value, true); }

}  // namespace bitsweep::server
