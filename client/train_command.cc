#include "client/train_command.h"

#include <google/protobuf/descriptor.h>
#include <google/protobuf/util/json_util.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cmath>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <sstream>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "client/sweep_file.h"
#include "client/text_table.h"
#include "worker/trainer/data/dataset.h"
#include "worker/trainer/trainer.h"
#include "worker/trainer/trial_config.h"

namespace bitsweep::client {
namespace {

using google::protobuf::Descriptor;
using google::protobuf::FieldDescriptor;
using google::protobuf::Message;
using google::protobuf::Reflection;
using google::protobuf::Struct;
using google::protobuf::Value;
using nlohmann::json;

absl::string_view Absl(std::string_view s) { return absl::string_view(s.data(), s.size()); }

// --- YAML -> Struct ---------------------------------------------------------------------------

// Lines added in front of a bare trial config to make it a sweep file for ParseSweepYaml.
constexpr char kBarePrefix[] = "name: train\nbase:\n";
constexpr int kBareLines = 2, kBareIndent = 2;

// A top-level `base:` or `sweep:` key at the start of a line: a sweep file.
bool LooksLikeSweepFile(std::string_view text) {
  for (absl::string_view line : absl::StrSplit(Absl(text), '\n')) {
    if (absl::StartsWith(line, "base:") || absl::StartsWith(line, "sweep:")) return true;
  }
  return false;
}

// Maps "SOURCE:LINE:COL: ..." of the wrapped text back onto the user's file.
std::string UnwrapPosition(absl::string_view message, absl::string_view source) {
  const std::string prefix = absl::StrCat(source, ":");
  if (!absl::StartsWith(message, prefix)) return std::string(message);
  absl::string_view rest = message.substr(prefix.size());
  std::vector<absl::string_view> parts = absl::StrSplit(rest, absl::MaxSplits(':', 2));
  int line = 0, column = 0;
  if (parts.size() == 3 && absl::SimpleAtoi(parts[0], &line) &&
      absl::SimpleAtoi(parts[1], &column) && line > kBareLines) {
    return absl::StrCat(prefix, line - kBareLines, ":", std::max(1, column - kBareIndent), ":",
                        parts[2]);
  }
  return std::string(message);
}

absl::StatusOr<Struct> ReadBase(std::string_view text, std::string_view source) {
  if (LooksLikeSweepFile(text)) {
    absl::StatusOr<v1::SweepSpec> spec = ParseSweepYaml(Absl(text), Absl(source));
    if (!spec.ok()) return spec.status();
    return spec->base();
  }
  std::string wrapped = kBarePrefix;
  std::vector<absl::string_view> lines = absl::StrSplit(Absl(text), '\n');
  if (!lines.empty() && lines.back().empty()) lines.pop_back();  // the final newline
  for (absl::string_view line : lines) {
    absl::StrAppend(&wrapped, std::string(kBareIndent, ' '), line, "\n");
  }
  absl::StatusOr<v1::SweepSpec> spec = ParseSweepYaml(wrapped, Absl(source));
  if (!spec.ok()) {
    return absl::InvalidArgumentError(UnwrapPosition(spec.status().message(), Absl(source)));
  }
  return spec->base();
}

// --- Struct -> JSON, checked against the TrialConfig schema ------------------------------------

json ToJson(const Value& value) {
  switch (value.kind_case()) {
    case Value::kNumberValue: {
      const double d = value.number_value();
      if (std::floor(d) == d && std::fabs(d) < 9.2e18) return static_cast<int64_t>(d);
      return d;
    }
    case Value::kStringValue:
      return value.string_value();
    case Value::kBoolValue:
      return value.bool_value();
    case Value::kListValue: {
      json list = json::array();
      for (const Value& v : value.list_value().values()) list.push_back(ToJson(v));
      return list;
    }
    case Value::kStructValue: {
      json object = json::object();
      for (const auto& [key, v] : value.struct_value().fields()) object[key] = ToJson(v);
      return object;
    }
    default:
      return nullptr;
  }
}

std::string KnownFields(const Descriptor& message) {
  std::vector<std::string> names;
  for (int i = 0; i < message.field_count(); ++i) names.push_back(message.field(i)->name());
  return absl::StrJoin(names, ", ");
}

std::string Join(absl::string_view prefix, absl::string_view key) {
  return prefix.empty() ? std::string(key) : absl::StrCat(prefix, ".", key);
}

// Every key of `patch` must name a field of `message`; maps recurse into message fields.
absl::Status CheckFields(const Struct& patch, const Descriptor& message, absl::string_view path) {
  for (const auto& [key, value] : patch.fields()) {
    const std::string here = Join(path, key);
    const FieldDescriptor* field = message.FindFieldByName(key);
    if (field == nullptr) {
      return absl::InvalidArgumentError(
          absl::StrCat(here, ": unknown field (known: ", KnownFields(message), ")"));
    }
    if (field->cpp_type() != FieldDescriptor::CPPTYPE_MESSAGE) continue;
    if (field->is_repeated()) {
      if (value.kind_case() != Value::kListValue) {
        return absl::InvalidArgumentError(absl::StrCat(here, ": expected a list"));
      }
      for (int i = 0; i < value.list_value().values_size(); ++i) {
        const Value& element = value.list_value().values(i);
        if (element.kind_case() != Value::kStructValue) {
          return absl::InvalidArgumentError(absl::StrCat(here, "[", i, "]: expected a map"));
        }
        absl::Status s = CheckFields(element.struct_value(), *field->message_type(),
                                     absl::StrCat(here, "[", i, "]"));
        if (!s.ok()) return s;
      }
      continue;
    }
    if (value.kind_case() != Value::kStructValue) {
      return absl::InvalidArgumentError(absl::StrCat(here, ": expected a map"));
    }
    absl::Status s = CheckFields(value.struct_value(), *field->message_type(), here);
    if (!s.ok()) return s;
  }
  return absl::OkStatus();
}

// Objects merge key by key; anything else (lists included) replaces.
void Merge(json& target, const json& patch) {
  if (!patch.is_object() || !target.is_object()) {
    target = patch;
    return;
  }
  for (auto it = patch.begin(); it != patch.end(); ++it) {
    if (target.contains(it.key())) {
      Merge(target[it.key()], it.value());
    } else {
      target[it.key()] = it.value();
    }
  }
}

// "path=value": the value read with the sweep file's scalar rules ("16" a number, "[16, 32]" a
// list, "mask:12" text), set at the dotted path.
absl::Status ApplySet(const std::string& assignment, json& config) {
  const size_t eq = assignment.find('=');
  if (eq == std::string::npos || eq == 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("--set ", assignment, ": expected path=value, e.g. train.lr=0.01"));
  }
  const std::string path = assignment.substr(0, eq);
  const std::string text = assignment.substr(eq + 1);
  const std::string where = absl::StrCat("--set ", assignment, ": ");
  if (text.find_first_of("\r\n") != std::string::npos) {
    return absl::InvalidArgumentError(absl::StrCat(where, "the value must be one line"));
  }
  // Walk the schema along the path.
  const Descriptor* message = v1::TrialConfig::descriptor();
  std::vector<std::string> segments = absl::StrSplit(path, '.');
  std::string walked;
  const FieldDescriptor* field = nullptr;
  for (size_t i = 0; i < segments.size(); ++i) {
    if (message == nullptr) {
      return absl::InvalidArgumentError(
          absl::StrCat(where, walked, " is not a map, so it has no field '", segments[i], "'"));
    }
    field = message->FindFieldByName(segments[i]);
    if (field == nullptr) {
      return absl::InvalidArgumentError(
          absl::StrCat(where, Join(walked, segments[i]),
                       ": unknown field (known: ", KnownFields(*message), ")"));
    }
    walked = Join(walked, segments[i]);
    message = field->cpp_type() == FieldDescriptor::CPPTYPE_MESSAGE && !field->is_repeated()
                  ? field->message_type()
                  : nullptr;
  }
  absl::StatusOr<v1::SweepSpec> parsed =
      ParseSweepYaml(absl::StrCat("name: set\nbase:\n  v: ", text, "\n"), "--set");
  if (!parsed.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(where, "cannot read the value"));
  }
  const Value& value = parsed->base().fields().at("v");
  if (message != nullptr) {  // a whole message: must be a map of its fields
    if (value.kind_case() != Value::kStructValue) {
      return absl::InvalidArgumentError(absl::StrCat(where, path, ": expected a map"));
    }
    absl::Status s = CheckFields(value.struct_value(), *message, path);
    if (!s.ok()) return absl::InvalidArgumentError(absl::StrCat(where, s.message()));
  }
  json* target = &config;
  for (size_t i = 0; i + 1 < segments.size(); ++i) {
    json& next = (*target)[segments[i]];
    if (!next.is_object()) next = json::object();
    target = &next;
  }
  (*target)[segments.back()] = ToJson(value);
  return absl::OkStatus();
}

absl::StatusOr<json> MessageToJson(const Message& message) {
  google::protobuf::util::JsonPrintOptions options;
  options.preserve_proto_field_names = true;
  std::string text;
  auto status = google::protobuf::util::MessageToJsonString(message, &text, options);
  if (!status.ok()) return absl::InternalError(std::string(status.message()));
  return json::parse(text);
}

// --- Output -----------------------------------------------------------------------------------

// A message as plain JSON: every field (defaults included), 64-bit integers as numbers, enums
// by their short lowercase name (TRIAL_OUTCOME_COMPLETED -> "completed").
json PlainJson(const Message& message) {
  const Descriptor& d = *message.GetDescriptor();
  const Reflection& r = *message.GetReflection();
  json object = json::object();
  for (int i = 0; i < d.field_count(); ++i) {
    const FieldDescriptor& f = *d.field(i);
    auto one = [&](int index) -> json {
      const bool rep = f.is_repeated();
      switch (f.cpp_type()) {
        case FieldDescriptor::CPPTYPE_INT32:
          return rep ? r.GetRepeatedInt32(message, &f, index) : r.GetInt32(message, &f);
        case FieldDescriptor::CPPTYPE_INT64:
          return rep ? r.GetRepeatedInt64(message, &f, index) : r.GetInt64(message, &f);
        case FieldDescriptor::CPPTYPE_UINT32:
          return rep ? r.GetRepeatedUInt32(message, &f, index) : r.GetUInt32(message, &f);
        case FieldDescriptor::CPPTYPE_UINT64:
          return rep ? r.GetRepeatedUInt64(message, &f, index) : r.GetUInt64(message, &f);
        case FieldDescriptor::CPPTYPE_DOUBLE: {
          const double v = rep ? r.GetRepeatedDouble(message, &f, index) : r.GetDouble(message, &f);
          return std::isfinite(v) ? json(v) : json(absl::StrCat(v));  // "nan", "inf"
        }
        case FieldDescriptor::CPPTYPE_FLOAT:
          return rep ? r.GetRepeatedFloat(message, &f, index) : r.GetFloat(message, &f);
        case FieldDescriptor::CPPTYPE_BOOL:
          return rep ? r.GetRepeatedBool(message, &f, index) : r.GetBool(message, &f);
        case FieldDescriptor::CPPTYPE_STRING:
          return rep ? r.GetRepeatedString(message, &f, index) : r.GetString(message, &f);
        case FieldDescriptor::CPPTYPE_ENUM: {
          const auto* e = rep ? r.GetRepeatedEnum(message, &f, index) : r.GetEnum(message, &f);
          std::string name = e->name();
          // TrialOutcome -> TRIAL_OUTCOME_: strip the enum's own prefix.
          std::string snake;
          for (char c : e->type()->name()) {
            if (absl::ascii_isupper(c) && !snake.empty()) snake.push_back('_');
            snake.push_back(absl::ascii_toupper(c));
          }
          if (absl::StartsWith(name, snake + "_")) name = name.substr(snake.size() + 1);
          return absl::AsciiStrToLower(name);
        }
        case FieldDescriptor::CPPTYPE_MESSAGE:
          return PlainJson(rep ? r.GetRepeatedMessage(message, &f, index)
                               : r.GetMessage(message, &f));
      }
      return nullptr;
    };
    if (f.is_repeated()) {
      json list = json::array();
      for (int k = 0; k < r.FieldSize(message, &f); ++k) list.push_back(one(k));
      object[f.name()] = std::move(list);
    } else {
      object[f.name()] = one(0);
    }
  }
  return object;
}

std::string OutcomeName(v1::TrialOutcome outcome) {
  switch (outcome) {
    case v1::TRIAL_OUTCOME_COMPLETED:
      return "completed";
    case v1::TRIAL_OUTCOME_DIVERGED:
      return "diverged";
    case v1::TRIAL_OUTCOME_PRUNED:
      return "pruned";
    default:
      return "unknown";
  }
}

std::string Percent(double fraction) { return absl::StrFormat("%.2f%%", 100 * fraction); }

std::string PointLine(const v1::CurvePoint& p, int64_t total) {
  std::string line = absl::StrFormat(
      "iteration %d/%d (%d%%)  epoch %.2f  train loss %.4f  "
      "train acc %s  test loss %.4f  test acc %s  lr %.4g",
      p.iteration(), total, total > 0 ? p.iteration() * 100 / total : 100, p.epoch(),
      p.train_loss(), Percent(p.train_accuracy()), p.test_loss(), Percent(p.test_accuracy()),
      p.learning_rate());
  for (const v1::SiteStats& s : p.sites()) {
    absl::StrAppendFormat(&line, "  %s %.1f bits", s.site(), s.effective_bits());
  }
  return line;
}

std::string Bar(int64_t done, int64_t total, int width) {
  const int filled =
      total > 0 ? static_cast<int>(std::min<int64_t>(width, done * width / total)) : width;
  return absl::StrCat("[", std::string(filled, '#'), std::string(width - filled, '.'), "]");
}

void PrintSummary(const v1::TrialConfig& config, const v1::TrialResult& r, std::ostream& out) {
  TextTable table({"", ""});
  table.AddRow({"outcome", OutcomeName(r.outcome())});
  if (!r.detail().empty()) table.AddRow({"detail", r.detail()});
  table.AddRow({"final test accuracy", Percent(r.final_test_accuracy())});
  table.AddRow({"best test accuracy", Percent(r.best_test_accuracy())});
  table.AddRow({"final test loss", absl::StrFormat("%.4f", r.final_test_loss())});
  table.AddRow({"iterations", absl::StrCat(r.iterations())});
  if (config.train().target_accuracy() > 0) {
    table.AddRow(
        {absl::StrCat("iterations to ", Percent(config.train().target_accuracy())),
         r.iterations_to_target() >= 0 ? absl::StrCat(r.iterations_to_target()) : "not reached"});
  }
  table.AddRow({"kappa", absl::StrFormat("%.4f", r.kappa())});
  std::vector<std::string> recall;
  for (double v : r.per_class_recall()) recall.push_back(absl::StrFormat("%.2f", v));
  table.AddRow({"per-class recall", absl::StrJoin(recall, " ")});
  table.AddRow({"images/s", absl::StrFormat("%.0f", r.images_per_second())});
  table.AddRow({"train seconds", absl::StrFormat("%.2f", r.train_seconds())});
  // The table's header row is empty: print from the second line on.
  std::string text = table.ToString();
  const size_t newline = text.find('\n');
  out << (newline == std::string::npos ? text : text.substr(newline + 1));
}

}  // namespace

absl::StatusOr<v1::TrialConfig> TrainConfigFromYaml(std::string_view text, std::string_view source,
                                                    const std::vector<std::string>& sets) {
  absl::StatusOr<Struct> base = ReadBase(text, source);
  if (!base.ok()) return base.status();
  absl::Status checked = CheckFields(*base, *v1::TrialConfig::descriptor(), "");
  if (!checked.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(Absl(source), ": ", checked.message()));
  }
  absl::StatusOr<json> config = MessageToJson(trainer::DefaultTrialConfig());
  if (!config.ok()) return config.status();
  Value base_value;
  *base_value.mutable_struct_value() = *base;
  Merge(*config, ToJson(base_value));
  for (const std::string& set : sets) {
    absl::Status s = ApplySet(set, *config);
    if (!s.ok()) return s;
  }
  v1::TrialConfig result;
  google::protobuf::util::JsonParseOptions options;
  auto parsed = google::protobuf::util::JsonStringToMessage(config->dump(), &result, options);
  if (!parsed.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(
        Absl(source), sets.empty() ? "" : " (with --set)", ": ", parsed.message().as_string()));
  }
  absl::Status valid = trainer::ValidateTrialConfig(result);
  if (!valid.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat(Absl(source), sets.empty() ? "" : " (with --set)", ": ", valid.message()));
  }
  return result;
}

absl::StatusOr<v1::TrialConfig> LoadTrainConfig(const std::string& path,
                                                const std::vector<std::string>& sets) {
  std::ifstream file(path, std::ios::binary);
  if (!file) return absl::NotFoundError(absl::StrCat("cannot read config file ", path));
  std::ostringstream text;
  text << file.rdbuf();
  return TrainConfigFromYaml(text.str(), path, sets);
}

absl::Status RunTrain(const TrainRequest& request, std::ostream& out, std::ostream& err,
                      bool err_is_tty) {
  if (request.threads < 1) return absl::InvalidArgumentError("--threads: must be at least 1");
  absl::StatusOr<v1::TrialConfig> config = LoadTrainConfig(request.config_path, request.sets);
  if (!config.ok()) return config.status();
  absl::StatusOr<std::shared_ptr<const trainer::Dataset>> data =
      trainer::LoadDataset(config->dataset().name(), request.data_dir);
  if (!data.ok()) return data.status();
  const trainer::Dataset& dataset = **data;

  const int64_t examples = config->dataset().train_limit() > 0
                               ? std::min(config->dataset().train_limit(), dataset.train_size())
                               : dataset.train_size();
  const int64_t batch = std::max(1, config->train().batch_size());
  const int64_t total = config->train().iterations() > 0
                            ? config->train().iterations()
                            : config->train().epochs() * ((examples + batch - 1) / batch);

  std::vector<v1::CurvePoint> curve;
  int64_t iteration = 0;
  int last_percent = -1;
  std::string last_point;
  auto redraw = [&] {
    const int percent =
        total > 0 ? static_cast<int>(std::min<int64_t>(100, iteration * 100 / total)) : 0;
    if (percent == last_percent) return;
    last_percent = percent;
    err << "\r" << Bar(iteration, total, 30)
        << absl::StrFormat(" %3d%% %d/%d", percent, iteration, total) << last_point << "\x1b[K"
        << std::flush;
  };
  trainer::TrainOptions options;
  options.threads = request.threads;
  if (err_is_tty) {
    options.should_stop = [&] {
      ++iteration;
      redraw();
      return false;
    };
  }
  auto on_progress = [&](const v1::CurvePoint& point) {
    curve.push_back(point);
    if (err_is_tty) {
      iteration = point.iteration();
      last_point = absl::StrFormat("  loss %.4f  test acc %s", point.train_loss(),
                                   Percent(point.test_accuracy()));
      last_percent = -1;
      redraw();
    } else {
      err << PointLine(point, total) << std::endl;
    }
    return true;
  };
  absl::StatusOr<v1::TrialResult> result = trainer::Train(*config, dataset, on_progress, options);
  if (err_is_tty) err << "\n";
  if (!result.ok()) return result.status();

  if (request.json) {
    json curve_json = json::array();
    for (const v1::CurvePoint& p : curve) curve_json.push_back(PlainJson(p));
    const json document = {{"config", PlainJson(*config)},
                           {"result", PlainJson(*result)},
                           {"curve", std::move(curve_json)}};
    out << document.dump(2) << "\n";
  } else {
    PrintSummary(*config, *result, out);
  }
  return absl::OkStatus();
}

void AddTrainCommand(CLI::App& app, std::ostream* out, std::ostream* err, bool err_is_tty,
                     const std::function<void(LocalRun)>& set_run) {
  auto request = std::make_shared<TrainRequest>();
  CLI::App* command =
      app.add_subcommand("train", "Run one trial locally and print its result (no server needed)");
  command
      ->add_option("CONFIG", request->config_path,
                   "Trial config (YAML), or a sweep file whose base is used")
      ->required();
  command->add_option("--set", request->sets,
                      "Override one field by its dotted path (repeatable), e.g. train.lr=0.01");
  command->add_option("--threads", request->threads, "Threads inside the trial")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  command->add_flag("--json", request->json, "Print the result and the curve as JSON");
  command
      ->add_option("--data-dir", request->data_dir,
                   "Directory holding mnist/, fashion-mnist/, cifar10/")
      ->capture_default_str();
  command->footer(
      "Example:\n"
      "  bitsweep train examples/quickstart.yaml --set precision.default.format=mask:12\n"
      "  bitsweep train trial.yaml --threads 2 --json > result.json");
  command->callback([request, out, err, err_is_tty, set_run] {
    set_run([request, out, err, err_is_tty]() -> absl::StatusOr<int> {
      absl::Status status = RunTrain(*request, *out, *err, err_is_tty);
      if (!status.ok()) return status;
      return 0;
    });
  });
}

}  // namespace bitsweep::client
