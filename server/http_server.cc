#include "server/http_server.h"

#include <google/protobuf/util/json_util.h>
#include <httplib.h>

#include <charconv>
#include <chrono>
#include <map>
#include <memory>
#include <string_view>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "analysis/sweep_analysis.h"
#include "nlohmann/json.hpp"
#include "server/embedded_file.h"

namespace bitsweep::server {
namespace {

// With a charset parameter httplib (0.11) does not compress the body: its Brotli at quality 11
// takes seconds on a 10,000-trial table, far more than sending it uncompressed.
constexpr char kJson[] = "application/json; charset=utf-8";
constexpr int kHttpThreads = 32;
constexpr int kMaxEventStreams = 24;

int HttpCode(absl::StatusCode code) {
  switch (code) {
    case absl::StatusCode::kNotFound:
      return 404;
    case absl::StatusCode::kInvalidArgument:
      return 400;
    case absl::StatusCode::kUnavailable:
      return 503;
    default:
      return 500;
  }
}

void SendError(httplib::Response& response, const absl::Status& status) {
  nlohmann::json body = {{"error", std::string(status.message())},
                         {"code", absl::StatusCodeToString(status.code())}};
  response.status = HttpCode(status.code());
  response.set_content(body.dump(), kJson);
}

absl::StatusOr<std::string> ProtoJson(const google::protobuf::Message& message) {
  google::protobuf::util::JsonPrintOptions options;
  options.always_print_primitive_fields = true;
  options.preserve_proto_field_names = true;
  std::string json;
  auto status = google::protobuf::util::MessageToJsonString(message, &json, options);
  if (!status.ok()) return absl::InternalError(std::string(status.message()));
  return json;
}

void SendProto(httplib::Response& response, const google::protobuf::Message& message) {
  absl::StatusOr<std::string> json = ProtoJson(message);
  if (!json.ok()) return SendError(response, json.status());
  response.set_content(*json, kJson);
}

void SendJsonText(httplib::Response& response, const absl::StatusOr<std::string>& text) {
  if (!text.ok()) return SendError(response, text.status());
  response.set_content(*text, kJson);
}

// The sweep's JSON with the read model's timings merged in (started, elapsed, ETA, counts
// with pruned).
void MergeTimings(nlohmann::json& sweep, const std::map<int64_t, nlohmann::json>& timings) {
  auto found = timings.find(std::stoll(sweep.value("id", std::string("0"))));
  if (found == timings.end()) return;
  for (const auto& [key, value] : found->second.items()) sweep[key] = value;
}

// A positive id from a path segment. Errors: InvalidArgument.
absl::StatusOr<int64_t> ParseId(const std::string& text, const char* what) {
  int64_t id = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), id);
  if (ec != std::errc() || end != text.data() + text.size() || id <= 0) {
    return absl::InvalidArgumentError(absl::StrCat("bad ", what, " id '", text, "'"));
  }
  return id;
}

std::string ContentType(std::string_view name) {
  if (name.ends_with(".html")) return "text/html; charset=utf-8";
  // Not text/...: httplib would Brotli-compress it on every request (see kJson).
  if (name.ends_with(".js")) return "application/javascript; charset=utf-8";
  if (name.ends_with(".css")) return "text/css; charset=utf-8";
  if (name.ends_with(".svg")) return "image/svg+xml";
  return "application/octet-stream";
}

}  // namespace

HttpServer::HttpServer(TrialStore* store, Scheduler* scheduler, const ServerMetrics* metrics)
    : HttpServer(store, scheduler, metrics, "", "") {}

HttpServer::HttpServer(TrialStore* store, Scheduler* scheduler, const ServerMetrics* metrics,
                       const std::string& tls_cert_file, const std::string& tls_key_file)
    : store_(store),
      scheduler_(scheduler),
      metrics_(metrics),
      server_(tls_cert_file.empty() ? std::make_unique<httplib::Server>()
                                    : std::make_unique<httplib::SSLServer>(tls_cert_file.c_str(),
                                                                           tls_key_file.c_str())) {
  // Event streams hold a thread each: room for them beside ordinary requests.
  server_->new_task_queue = [] { return new httplib::ThreadPool(kHttpThreads); };
  // httplib's default also sets SO_REUSEPORT, which lets a second server bind a port already
  // in use and steal half its connections; keep only SO_REUSEADDR (fast restarts).
  server_->set_socket_options([](socket_t sock) {
    int yes = 1;
    setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof(yes));
  });
  RegisterRoutes();
}

HttpServer::~HttpServer() { Stop(); }

absl::Status HttpServer::AttachDatabase(const std::string& db_path, const common::Clock* clock) {
  if (thread_.joinable()) return absl::FailedPreconditionError("attach before Start");
  absl::StatusOr<std::unique_ptr<SweepReadModel>> model = SweepReadModel::Open(db_path, clock);
  if (!model.ok()) return model.status();
  read_model_ = *std::move(model);
  return absl::OkStatus();
}

absl::Status HttpServer::Start(const std::string& host, int port) {
  if (thread_.joinable()) return absl::FailedPreconditionError("HTTP server already started");
  if (!server_->is_valid()) {
    return absl::InvalidArgumentError("HTTPS: cannot use the --tls-cert/--tls-key pair");
  }
  if (port == 0) {
    port_ = server_->bind_to_any_port(host);
    if (port_ < 0) {
      port_ = 0;
      return absl::UnavailableError(absl::StrCat("cannot bind HTTP to ", host, ":0"));
    }
  } else {
    if (!server_->bind_to_port(host, port)) {
      return absl::UnavailableError(
          absl::StrCat("cannot bind HTTP to ", host, ":", port, " (address in use?)"));
    }
    port_ = port;
  }
  listen_returned_ = false;
  stopping_ = false;
  thread_ = std::thread([this] {
    server_->listen_after_bind();
    listen_returned_ = true;
  });
  // httplib 0.11's stop() does nothing until listen_after_bind() has marked the server
  // running, so a Stop() right after Start() would leave the accept loop blocked for good.
  // Wait (briefly: the thread only has to start) for the accept loop before returning.
  while (!server_->is_running() && !listen_returned_) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return absl::OkStatus();
}

void HttpServer::Stop() {
  if (!thread_.joinable()) return;
  stopping_ = true;
  server_->stop();
  thread_.join();
}

void HttpServer::RegisterRoutes() {
  httplib::Server& server = *server_;

  server.Get("/healthz", [](const httplib::Request&, httplib::Response& response) {
    response.set_content(R"({"status":"ok"})", kJson);
  });

  if (metrics_ != nullptr) {
    server.Get("/metrics", [this](const httplib::Request&, httplib::Response& response) {
      absl::StatusOr<MetricsSnapshot> snapshot = ReadMetricsSnapshot(store_, scheduler_);
      if (!snapshot.ok()) return SendError(response, snapshot.status());
      response.set_content(metrics_->Render(*snapshot), "text/plain; version=0.0.4; charset=utf-8");
    });
  }

  server.Get("/api/sweeps", [this](const httplib::Request&, httplib::Response& response) {
    absl::StatusOr<std::vector<v1::Sweep>> sweeps = store_->ListSweeps();
    if (!sweeps.ok()) return SendError(response, sweeps.status());
    v1::ListSweepsResponse body;
    for (v1::Sweep& sweep : *sweeps) *body.add_sweeps() = std::move(sweep);
    if (read_model_ == nullptr) return SendProto(response, body);
    absl::StatusOr<std::string> text = ProtoJson(body);
    if (!text.ok()) return SendError(response, text.status());
    absl::StatusOr<std::map<int64_t, nlohmann::json>> timings = read_model_->SweepTimings();
    if (!timings.ok()) return SendError(response, timings.status());
    nlohmann::json json = nlohmann::json::parse(*text);
    for (nlohmann::json& sweep : json["sweeps"]) MergeTimings(sweep, *timings);
    response.set_content(json.dump(), kJson);
  });

  server.Get(R"(/api/sweeps/([^/]+))", [this](const httplib::Request& request,
                                              httplib::Response& response) {
    absl::StatusOr<int64_t> id = ParseId(request.matches[1], "sweep");
    if (!id.ok()) return SendError(response, id.status());
    absl::StatusOr<v1::Sweep> sweep = store_->GetSweep(*id);
    if (!sweep.ok()) return SendError(response, sweep.status());
    if (read_model_ == nullptr) return SendProto(response, *sweep);
    absl::StatusOr<std::string> text = ProtoJson(*sweep);
    if (!text.ok()) return SendError(response, text.status());
    absl::StatusOr<std::map<int64_t, nlohmann::json>> timings = read_model_->SweepTimings();
    if (!timings.ok()) return SendError(response, timings.status());
    nlohmann::json json = nlohmann::json::parse(*text);
    MergeTimings(json, *timings);
    response.set_content(json.dump(), kJson);
  });

  server.Get(R"(/api/sweeps/([^/]+)/trials)", [this](const httplib::Request& request,
                                                     httplib::Response& response) {
    absl::StatusOr<int64_t> id = ParseId(request.matches[1], "sweep");
    if (!id.ok()) return SendError(response, id.status());
    absl::StatusOr<std::vector<v1::Trial>> trials = store_->ListTrials(*id, /*with_config=*/false);
    if (!trials.ok()) return SendError(response, trials.status());
    v1::ListTrialsResponse body;
    for (v1::Trial& trial : *trials) {
      // Tables need the summary numbers only; keep big sweeps' responses small.
      trial.mutable_result()->clear_confusion();
      trial.mutable_result()->clear_per_class_recall();
      *body.add_trials() = std::move(trial);
    }
    SendProto(response, body);
  });

  // bitsweep analyze over HTTP: the same analysis (analysis/sweep_analysis.h), same JSON.
  server.Get(R"(/api/sweeps/([^/]+)/analysis)", [this](const httplib::Request& request,
                                                       httplib::Response& response) {
    absl::StatusOr<int64_t> id = ParseId(request.matches[1], "sweep");
    if (!id.ok()) return SendError(response, id.status());
    if (absl::StatusOr<v1::Sweep> sweep = store_->GetSweep(*id); !sweep.ok()) {
      return SendError(response, sweep.status());
    }
    analysis::SweepAnalysisOptions options;
    if (request.has_param("delta")) {
      const std::string text = request.get_param_value("delta");
      if (!absl::SimpleAtod(text, &options.delta_points)) {
        return SendError(response, absl::InvalidArgumentError(absl::StrCat(
                                       "delta: '", text, "' is not a number (percentage points)")));
      }
    }
    if (request.has_param("axis")) options.axis = request.get_param_value("axis");
    absl::StatusOr<std::string> json = SweepAnalysisJson(*id, options.delta_points, options.axis);
    if (!json.ok()) return SendError(response, json.status());
    response.set_content(*json, kJson);
  });

  server.Get(R"(/api/trials/([^/]+))",
             [this](const httplib::Request& request, httplib::Response& response) {
               absl::StatusOr<int64_t> id = ParseId(request.matches[1], "trial");
               if (!id.ok()) return SendError(response, id.status());
               absl::StatusOr<v1::Trial> trial = store_->GetTrial(*id);
               if (!trial.ok()) return SendError(response, trial.status());
               absl::StatusOr<std::vector<v1::CurvePoint>> curve = store_->GetCurve(*id);
               if (!curve.ok()) return SendError(response, curve.status());
               // Sites and layers go out columnar (site_series, layer_series), not per point.
               nlohmann::json stats = CurveStatsColumns(*curve);
               v1::GetTrialResponse body;
               *body.mutable_trial() = *std::move(trial);
               for (v1::CurvePoint& point : *curve) {
                 point.clear_sites();
                 point.clear_layers();
                 *body.add_curve() = std::move(point);
               }
               absl::StatusOr<std::string> text = ProtoJson(body);
               if (!text.ok()) return SendError(response, text.status());
               nlohmann::json json = nlohmann::json::parse(*text);
               json.update(stats);
               if (read_model_ != nullptr) {
                 absl::StatusOr<nlohmann::json> history = read_model_->TrialHistory(*id);
                 if (!history.ok()) return SendError(response, history.status());
                 json["history"] = *std::move(history);
               }
               response.set_content(json.dump(), kJson);
             });

  // The trial's checkpoint as the trainer wrote it (`bitsweep predict --checkpoint FILE` reads
  // it); iteration and attempt in headers.
  server.Get(R"(/api/trials/([^/]+)/checkpoint)",
             [this](const httplib::Request& request, httplib::Response& response) {
               absl::StatusOr<int64_t> id = ParseId(request.matches[1], "trial");
               if (!id.ok()) return SendError(response, id.status());
               absl::StatusOr<TrialCheckpoint> checkpoint = store_->GetCheckpoint(*id);
               if (!checkpoint.ok()) return SendError(response, checkpoint.status());
               response.set_header("X-Bitsweep-Iteration", std::to_string(checkpoint->iteration));
               response.set_header("X-Bitsweep-Attempt", std::to_string(checkpoint->attempt));
               response.set_header("Content-Disposition",
                                   absl::StrCat("attachment; filename=\"trial-", *id, ".ckpt\""));
               response.set_content(std::move(checkpoint->state), "application/octet-stream");
             });

  // Predictions recorded on the sweep (`bitsweep predict --record`), oldest first.
  server.Get(R"(/api/sweeps/([^/]+)/predictions)", [this](const httplib::Request& request,
                                                          httplib::Response& response) {
    absl::StatusOr<int64_t> id = ParseId(request.matches[1], "sweep");
    if (!id.ok()) return SendError(response, id.status());
    absl::StatusOr<std::vector<StoredPrediction>> predictions = store_->ListPredictions(*id);
    if (!predictions.ok()) return SendError(response, predictions.status());
    nlohmann::json list = nlohmann::json::array();
    for (const StoredPrediction& p : *predictions) {
      // Validated when recorded; a row that no longer parses is shown as null, not a 500.
      list.push_back({{"id", p.id},
                      {"sweep_id", p.sweep_id},
                      {"created_unix_ms", p.created_ms},
                      {"source_trial_id", p.source_trial_id},
                      {"source", p.source},
                      {"prediction", nlohmann::json::parse(p.json, nullptr, false)}});
      if (list.back()["prediction"].is_discarded()) list.back()["prediction"] = nullptr;
    }
    response.set_content(nlohmann::json{{"sweep_id", *id}, {"predictions", list}}.dump(), kJson);
  });

  server.Get("/api/workers", [this](const httplib::Request&, httplib::Response& response) {
    absl::StatusOr<std::vector<v1::WorkerInfo>> workers = scheduler_->ListWorkers();
    if (!workers.ok()) return SendError(response, workers.status());
    v1::ListWorkersResponse body;
    for (v1::WorkerInfo& worker : *workers) *body.add_workers() = std::move(worker);
    if (read_model_ == nullptr) return SendProto(response, body);
    absl::StatusOr<std::string> text = ProtoJson(body);
    if (!text.ok()) return SendError(response, text.status());
    absl::StatusOr<std::map<std::string, int64_t>> finished =
        read_model_->FinishedPerWorker(3'600'000);
    if (!finished.ok()) return SendError(response, finished.status());
    nlohmann::json json = nlohmann::json::parse(*text);
    if (!json.contains("workers")) json["workers"] = nlohmann::json::array();
    for (nlohmann::json& worker : json["workers"]) {
      auto found = finished->find(worker.value("worker_id", std::string()));
      worker["finished_last_hour"] = found != finished->end() ? found->second : 0;
    }
    response.set_content(json.dump(), kJson);
  });

  RegisterDashboardRoutes();

  server.Get(R"(/api/.*)", [](const httplib::Request& request, httplib::Response& response) {
    SendError(response, absl::NotFoundError(absl::StrCat("no API route ", request.path)));
  });

  server.Get(R"(/([A-Za-z0-9_.-]*))",
             [](const httplib::Request& request, httplib::Response& response) {
               std::string name = request.matches[1];
               if (name.empty()) name = "index.html";
               for (const EmbeddedFile& file : EmbeddedWebAssets()) {
                 if (file.name == name) {
                   response.set_content(std::string(file.contents), ContentType(file.name));
                   return;
                 }
               }
               SendError(response, absl::NotFoundError(absl::StrCat("no page ", request.path)));
             });

  // Read-only (DESIGN §9): every other method is refused, on every path, so that no write can
  // reach the store over HTTP without going through gRPC and its tokens.
  const auto method_not_allowed = [](const httplib::Request& request, httplib::Response& response) {
    response.status = 405;
    response.set_header("Allow", "GET, HEAD");
    response.set_content(
        nlohmann::json{{"error", request.method + " is not allowed: the HTTP API is read-only"},
                       {"code", "METHOD_NOT_ALLOWED"}}
            .dump(),
        kJson);
  };
  server.Post(".*", method_not_allowed);
  server.Put(".*", method_not_allowed);
  server.Patch(".*", method_not_allowed);
  server.Delete(".*", method_not_allowed);
  server.Options(".*", method_not_allowed);
}

namespace {

// A CSV field: quoted when it holds a comma, quote or line break (RFC 4180).
std::string CsvField(const nlohmann::json& value) {
  std::string text;
  if (value.is_null()) return "";
  if (value.is_string()) {
    text = value.get<std::string>();
  } else {
    text = value.dump();
  }
  if (text.find_first_of(",\"\r\n") == std::string::npos) return text;
  std::string quoted = "\"";
  for (char c : text) {
    if (c == '"') quoted += '"';
    quoted += c;
  }
  return quoted + "\"";
}

// The trial table (TrialTable's JSON) as CSV or a JSON array of objects; swept parameters
// become columns named by their path, after id and idx.
absl::StatusOr<std::string> ExportTable(const std::string& table_text, const std::string& format) {
  nlohmann::json table = nlohmann::json::parse(table_text);
  std::vector<std::string> columns;
  std::vector<std::string> axes;
  for (const auto& axis : table["axes"]) axes.push_back(axis["path"].get<std::string>());
  const auto& table_columns = table["columns"];
  size_t params_column = table_columns.size() - 1;  // "params" comes last
  for (size_t c = 0; c < 2; ++c) columns.push_back(table_columns[c].get<std::string>());
  columns.insert(columns.end(), axes.begin(), axes.end());
  for (size_t c = 2; c < params_column; ++c) columns.push_back(table_columns[c].get<std::string>());
  auto values_of = [&](const nlohmann::json& row) {
    std::vector<nlohmann::json> values = {row[0], row[1]};
    for (size_t a = 0; a < axes.size(); ++a) {
      values.push_back(a < row[params_column].size() ? row[params_column][a] : nlohmann::json());
    }
    for (size_t c = 2; c < params_column; ++c) values.push_back(row[c]);
    return values;
  };
  if (format == "json") {
    nlohmann::json rows = nlohmann::json::array();
    for (const auto& row : table["rows"]) {
      std::vector<nlohmann::json> values = values_of(row);
      nlohmann::json object = nlohmann::json::object();
      for (size_t c = 0; c < columns.size(); ++c) object[columns[c]] = values[c];
      rows.push_back(std::move(object));
    }
    return rows.dump(1);
  }
  if (format != "csv") {
    return absl::InvalidArgumentError(
        absl::StrCat("unknown export format '", format, "' (known: csv, json)"));
  }
  std::string out;
  for (size_t c = 0; c < columns.size(); ++c) {
    if (c > 0) out += ',';
    out += CsvField(columns[c]);
  }
  out += '\n';
  for (const auto& row : table["rows"]) {
    std::vector<nlohmann::json> values = values_of(row);
    for (size_t c = 0; c < values.size(); ++c) {
      if (c > 0) out += ',';
      out += CsvField(values[c]);
    }
    out += '\n';
  }
  return out;
}

std::string EventText(const nlohmann::json& delta) {
  return absl::StrCat("event: delta\ndata: ", delta.dump(), "\n\n");
}

bool IsEmptyDelta(const nlohmann::json& delta) {
  return delta["trials"].empty() && delta["points"].empty() && !delta.contains("sweep");
}

}  // namespace

absl::StatusOr<std::string> HttpServer::SweepAnalysisJson(int64_t sweep_id, double delta_points,
                                                          const std::string& axis) {
  if (!(delta_points >= 0)) {  // also keeps NaN out of the cache's ordered keys
    return absl::InvalidArgumentError("delta: must be a number >= 0 (percentage points)");
  }
  std::lock_guard<std::mutex> lock(analysis_mu_);
  const auto key = std::make_tuple(sweep_id, delta_points, axis);
  if (auto it = analysis_cache_.find(key); it != analysis_cache_.end()) {
    absl::StatusOr<TrialChanges> changed =
        store_->ListTrialsChangedSince(sweep_id, it->second.change_seq, /*with_config=*/false);
    if (!changed.ok()) return changed.status();
    if (changed->trials.empty()) return it->second.json;
  }
  // All trials and the sequence number they are current at, from one query.
  absl::StatusOr<TrialChanges> all = store_->ListTrialsChangedSince(sweep_id, 0, false);
  if (!all.ok()) return all.status();
  absl::StatusOr<analysis::SweepAnalysis> a =
      analysis::AnalyzeSweep(all->trials, {delta_points, axis});
  if (!a.ok()) return a.status();
  std::string json = analysis::SweepAnalysisJson(*a).dump();
  if (analysis_cache_.size() >= 64 && !analysis_cache_.contains(key)) analysis_cache_.clear();
  analysis_cache_[key] = CachedAnalysis{all->last_seq, json};
  return json;
}

void HttpServer::RegisterDashboardRoutes() {
  httplib::Server& server = *server_;
  // Runs `fn(id, response)` for /api/sweeps/{id}/... once the id parsed and the read model is
  // there.
  auto sweep_route = [this](auto fn) {
    return [this, fn](const httplib::Request& request, httplib::Response& response) {
      if (read_model_ == nullptr) {
        return SendError(response, absl::UnavailableError("the dashboard read model is off"));
      }
      absl::StatusOr<int64_t> id = ParseId(request.matches[1], "sweep");
      if (!id.ok()) return SendError(response, id.status());
      fn(*id, request, response);
    };
  };
  auto metric_of = [](const httplib::Request& request) {
    return request.has_param("metric") ? request.get_param_value("metric")
                                       : std::string("test_accuracy");
  };

  server.Get(R"(/api/sweeps/([^/]+)/table)",
             sweep_route([this](int64_t id, const httplib::Request&, httplib::Response& response) {
               SendJsonText(response, read_model_->TrialTable(id));
             }));
  server.Get(R"(/api/sweeps/([^/]+)/groups)",
             sweep_route([this, metric_of](int64_t id, const httplib::Request& request,
                                           httplib::Response& response) {
               SendJsonText(response, read_model_->Groups(id, metric_of(request)));
             }));
  server.Get(R"(/api/sweeps/([^/]+)/curves)",
             sweep_route([this, metric_of](int64_t id, const httplib::Request& request,
                                           httplib::Response& response) {
               SendJsonText(response, read_model_->Curves(id, metric_of(request)));
             }));
  server.Get(
      R"(/api/sweeps/([^/]+)/export)",
      sweep_route([this](int64_t id, const httplib::Request& request, httplib::Response& response) {
        std::string format =
            request.has_param("format") ? request.get_param_value("format") : "csv";
        absl::StatusOr<std::string> table = read_model_->TrialTable(id);
        if (!table.ok()) return SendError(response, table.status());
        absl::StatusOr<std::string> text = ExportTable(*table, format);
        if (!text.ok()) return SendError(response, text.status());
        response.set_header("Content-Disposition",
                            absl::StrCat("attachment; filename=\"sweep-", id, ".", format, "\""));
        response.set_content(*text, format == "json" ? kJson : "text/csv; charset=utf-8");
      }));

  // Live updates: one "delta" event per change (DESIGN §10): new trial rows, new curve points
  // of running trials (after the iteration already sent), the sweep's counts. The first event
  // carries the points of every running trial; a comment line every 15 s keeps proxies open.
  server.Get(
      R"(/api/sweeps/([^/]+)/events)",
      sweep_route([this](int64_t id, const httplib::Request&, httplib::Response& response) {
        if (event_streams_.load() >= kMaxEventStreams) {
          return SendError(response, absl::UnavailableError("too many event streams open"));
        }
        auto cursor = std::make_shared<SweepEventCursor>();
        uint64_t seen = store_->changes().version();
        absl::StatusOr<nlohmann::json> first = read_model_->ChangesSince(id, cursor.get());
        if (!first.ok()) return SendError(response, first.status());
        (*first)["hello"] = true;
        auto pending = std::make_shared<std::string>(EventText(*first));
        ++event_streams_;
        response.set_header("Cache-Control", "no-cache");
        response.set_header("X-Accel-Buffering", "no");
        auto last_poll = std::make_shared<std::chrono::steady_clock::time_point>(
            std::chrono::steady_clock::now());
        response.set_chunked_content_provider(
            "text/event-stream",
            [this, id, cursor, pending, seen, last_poll](size_t, httplib::DataSink& sink) mutable {
              if (!pending->empty()) {
                std::string text = std::move(*pending);
                pending->clear();
                return sink.write(text.data(), text.size());
              }
              auto keep_alive = std::chrono::steady_clock::now() + std::chrono::seconds(15);
              while (!stopping_) {
                uint64_t version =
                    store_->changes().WaitForChange(seen, std::chrono::milliseconds(250));
                bool changed = version != seen;
                seen = version;
                auto now = std::chrono::steady_clock::now();
                // Writers in other processes (tools sharing the file) do not notify: poll too.
                if (changed || now - *last_poll >= std::chrono::seconds(1)) {
                  *last_poll = now;
                  absl::StatusOr<nlohmann::json> delta =
                      read_model_->ChangesSince(id, cursor.get());
                  if (!delta.ok()) {
                    sink.done();
                    return true;
                  }
                  if (!IsEmptyDelta(*delta)) {
                    std::string text = EventText(*delta);
                    return sink.write(text.data(), text.size());
                  }
                }
                if (now >= keep_alive) {
                  static constexpr char kKeepAlive[] = ": keep-alive\n\n";
                  return sink.write(kKeepAlive, sizeof(kKeepAlive) - 1);
                }
              }
              sink.done();
              return true;
            },
            [this](bool) { --event_streams_; });
      }));
}

}  // namespace bitsweep::server
