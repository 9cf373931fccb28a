#include "server/http_server.h"

#include <google/protobuf/util/json_util.h>
#include <httplib.h>

#include <charconv>
#include <chrono>
#include <string_view>

#include "absl/strings/str_cat.h"
#include "nlohmann/json.hpp"
#include "server/embedded_file.h"

namespace bitsweep::server {
namespace {

constexpr char kJson[] = "application/json";

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

void SendProto(httplib::Response& response, const google::protobuf::Message& message) {
  google::protobuf::util::JsonPrintOptions options;
  options.always_print_primitive_fields = true;
  options.preserve_proto_field_names = true;
  std::string json;
  auto status = google::protobuf::util::MessageToJsonString(message, &json, options);
  if (!status.ok()) {
    SendError(response, absl::InternalError(std::string(status.message())));
    return;
  }
  response.set_content(json, kJson);
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
  if (name.ends_with(".js")) return "text/javascript; charset=utf-8";
  if (name.ends_with(".css")) return "text/css; charset=utf-8";
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
      server_(tls_cert_file.empty()
                  ? std::make_unique<httplib::Server>()
                  : std::make_unique<httplib::SSLServer>(tls_cert_file.c_str(),
                                                         tls_key_file.c_str())) {
  // httplib's default also sets SO_REUSEPORT, which lets a second server bind a port already
  // in use and steal half its connections; keep only SO_REUSEADDR (fast restarts).
  server_->set_socket_options([](socket_t sock) {
    int yes = 1;
    setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof(yes));
  });
  RegisterRoutes();
}

HttpServer::~HttpServer() { Stop(); }

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
      response.set_content(metrics_->Render(*snapshot),
                           "text/plain; version=0.0.4; charset=utf-8");
    });
  }

  server.Get("/api/sweeps", [this](const httplib::Request&, httplib::Response& response) {
    absl::StatusOr<std::vector<v1::Sweep>> sweeps = store_->ListSweeps();
    if (!sweeps.ok()) return SendError(response, sweeps.status());
    v1::ListSweepsResponse body;
    for (v1::Sweep& sweep : *sweeps) *body.add_sweeps() = std::move(sweep);
    SendProto(response, body);
  });

  server.Get(R"(/api/sweeps/([^/]+))",
             [this](const httplib::Request& request, httplib::Response& response) {
               absl::StatusOr<int64_t> id = ParseId(request.matches[1], "sweep");
               if (!id.ok()) return SendError(response, id.status());
               absl::StatusOr<v1::Sweep> sweep = store_->GetSweep(*id);
               if (!sweep.ok()) return SendError(response, sweep.status());
               SendProto(response, *sweep);
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

  server.Get(R"(/api/trials/([^/]+))",
             [this](const httplib::Request& request, httplib::Response& response) {
               absl::StatusOr<int64_t> id = ParseId(request.matches[1], "trial");
               if (!id.ok()) return SendError(response, id.status());
               absl::StatusOr<v1::Trial> trial = store_->GetTrial(*id);
               if (!trial.ok()) return SendError(response, trial.status());
               absl::StatusOr<std::vector<v1::CurvePoint>> curve = store_->GetCurve(*id);
               if (!curve.ok()) return SendError(response, curve.status());
               v1::GetTrialResponse body;
               *body.mutable_trial() = *std::move(trial);
               for (v1::CurvePoint& point : *curve) *body.add_curve() = std::move(point);
               SendProto(response, body);
             });

  server.Get("/api/workers", [this](const httplib::Request&, httplib::Response& response) {
    absl::StatusOr<std::vector<v1::WorkerInfo>> workers = scheduler_->ListWorkers();
    if (!workers.ok()) return SendError(response, workers.status());
    v1::ListWorkersResponse body;
    for (v1::WorkerInfo& worker : *workers) *body.add_workers() = std::move(worker);
    SendProto(response, body);
  });

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
  const auto method_not_allowed = [](const httplib::Request& request,
                                     httplib::Response& response) {
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

}  // namespace bitsweep::server
