#include "tests/e2e/cluster.h"

#include <grpcpp/create_channel.h>
#include <grpcpp/security/credentials.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/inotify.h>
#include <unistd.h>

#include <cstdlib>
#include <iostream>
#include <nlohmann/json.hpp>
#include <thread>

namespace bitsweep::e2e {

namespace fs = std::filesystem;
using std::chrono::milliseconds;

google::protobuf::Value Str(const std::string& s) {
  google::protobuf::Value v;
  v.set_string_value(s);
  return v;
}
google::protobuf::Value Num(double d) {
  google::protobuf::Value v;
  v.set_number_value(d);
  return v;
}
google::protobuf::Value List(std::initializer_list<google::protobuf::Value> items) {
  google::protobuf::Value v;
  for (const auto& item : items) *v.mutable_list_value()->add_values() = item;
  return v;
}
google::protobuf::Value Map(
    std::initializer_list<std::pair<const std::string, google::protobuf::Value>> fields) {
  google::protobuf::Value v;
  for (const auto& [key, value] : fields)
    (*v.mutable_struct_value()->mutable_fields())[key] = value;
  return v;
}

v1::SweepSpec SimulatedSweep(const std::string& name, int trials, int points, int millis_per_point,
                             int eval_every) {
  v1::SweepSpec spec;
  spec.set_name(name);
  spec.set_method("grid");
  spec.set_seeds(trials);
  *spec.mutable_base() =
      Map({{"kind", Str("simulated")},
           {"simulation",
            Map({{"points", Num(points)}, {"millis_per_point", Num(millis_per_point)}})},
           {"dataset", Map({{"name", Str("synthetic")}})},
           {"train",
            Map({{"eval_every", Num(eval_every)}, {"iterations", Num(points * eval_every)}})},
           {"precision", Map({{"default", Map({{"format", Str("mask:12")}})}})}})
          .struct_value();
  v1::SweepParameter* rounding = spec.add_parameters();
  rounding->set_path("precision.default.rounding");
  *rounding->mutable_values() = List({Str("stochastic")}).list_value();
  return spec;
}

absl::StatusOr<std::unique_ptr<Cluster>> Cluster::Create() {
  for (const char* bin : {BITSWEEP_SERVER_BIN, BITSWEEP_WORKER_BIN}) {
    if (!fs::exists(bin)) return absl::FailedPreconditionError(std::string(bin) + " is not built");
  }
  std::string pattern = (fs::temp_directory_path() / "bitsweep-fault-XXXXXX").string();
  if (mkdtemp(pattern.data()) == nullptr) return absl::InternalError("mkdtemp failed");
  return std::unique_ptr<Cluster>(new Cluster(pattern));
}

Cluster::~Cluster() {
  sweep_stub_.reset();
  worker_stub_.reset();
  channel_.reset();
  // Workers first, so that they do not spin on a dead server.
  for (ChildProcess& child : children_) {
    if (&child != server_) child.Stop(std::chrono::seconds(5));
  }
  children_.clear();
  if (keep_ || std::getenv("BITSWEEP_E2E_KEEP") != nullptr) {
    std::cerr << "---- e2e temp dir kept: " << dir_ << "\n";
  } else {
    std::error_code ignored;
    fs::remove_all(dir_, ignored);
  }
}

ChildProcess* Cluster::Spawn(const std::vector<std::string>& argv, const std::string& label) {
  std::string error;
  std::optional<ChildProcess> child =
      ChildProcess::Start(argv, dir_ / (label + ".out"), dir_ / (label + ".err"), &error);
  if (!child) {
    std::cerr << "cannot start " << label << ": " << error << "\n";
    return nullptr;
  }
  children_.push_back(std::move(*child));
  return &children_.back();
}

absl::Status Cluster::StartServer(const std::vector<std::string>& extra_args,
                                  const std::string& listen, const std::vector<std::string>& wrap) {
  ++server_starts_;
  const std::string suffix = std::to_string(server_starts_);
  const fs::path port_file = dir_ / ("ports-" + suffix + ".json");
  // Watch before starting, so that the rename cannot slip by unseen.
  const int inotify = inotify_init1(IN_CLOEXEC | IN_NONBLOCK);
  if (inotify < 0) return absl::InternalError("inotify_init1 failed");
  inotify_add_watch(inotify, dir_.c_str(), IN_MOVED_TO | IN_CLOSE_WRITE);
  std::vector<std::string> argv = wrap;
  for (const std::string& arg :
       {std::string(BITSWEEP_SERVER_BIN), std::string("--listen"), listen, std::string("--http"),
        std::string("127.0.0.1:0"), std::string("--db"), db_path().string(),
        std::string("--port-file"), port_file.string(), std::string("--log-level"),
        server_log_level_}) {
    argv.push_back(arg);
  }
  argv.insert(argv.end(), extra_args.begin(), extra_args.end());
  server_ = Spawn(argv, "server-" + suffix);
  if (server_ == nullptr) {
    close(inotify);
    return absl::InternalError("cannot start bitsweep-server");
  }
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (!fs::exists(port_file)) {
    const auto left =
        std::chrono::duration_cast<milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) {
      close(inotify);
      return absl::DeadlineExceededError("bitsweep-server wrote no port file within 30 s");
    }
    pollfd fds[2] = {{inotify, POLLIN, 0}, {server_->exit_fd(), POLLIN, 0}};
    poll(fds, server_->exit_fd() >= 0 ? 2 : 1, static_cast<int>(left.count()));
    char buffer[4096];
    while (read(inotify, buffer, sizeof(buffer)) > 0) {
    }
    if (server_->Exited()) {
      close(inotify);
      return absl::InternalError("bitsweep-server exited during start-up: " +
                                 ReadFile(server_->stderr_path()));
    }
  }
  close(inotify);
  const nlohmann::json ports = nlohmann::json::parse(ReadFile(port_file), nullptr, false);
  if (ports.is_discarded() || !ports.contains("grpc_port")) {
    return absl::InternalError("bad port file: " + ReadFile(port_file));
  }
  grpc_port_ = ports["grpc_port"].get<int>();
  const std::string host = listen.substr(0, listen.rfind(':'));
  server_address_ = (host == "0.0.0.0" ? "127.0.0.1" : host) + ":" + std::to_string(grpc_port_);
  Connect();
  return absl::OkStatus();
}

void Cluster::KillServer() {
  if (server_ == nullptr) return;
  kill(server_->pid(), SIGKILL);
  server_->Wait(std::chrono::seconds(10));
}

int Cluster::StopServer(std::chrono::milliseconds grace) {
  if (server_ == nullptr) return -1;
  return server_->Stop(grace);
}

ChildProcess* Cluster::StartWorker(const std::string& worker_id, int slots,
                                   const std::vector<std::string>& extra_args,
                                   const std::vector<std::string>& wrap,
                                   const std::string& server_address) {
  std::vector<std::string> argv = wrap;
  for (const std::string& arg :
       {std::string(BITSWEEP_WORKER_BIN), std::string("--server"),
        server_address.empty() ? server_address_ : server_address, std::string("--slots"),
        std::to_string(slots), std::string("--data-dir"), dir_.string(), std::string("--worker-id"),
        worker_id, std::string("--log-level"), worker_log_level_}) {
    argv.push_back(arg);
  }
  argv.insert(argv.end(), extra_args.begin(), extra_args.end());
  ChildProcess* worker = Spawn(argv, worker_id);
  if (worker != nullptr) workers_.push_back(worker);
  return worker;
}

void Cluster::Connect() {
  channel_ = grpc::CreateChannel(server_address_, grpc::InsecureChannelCredentials());
  sweep_stub_ = v1::SweepService::NewStub(channel_);
  worker_stub_ = v1::WorkerService::NewStub(channel_);
}

std::unique_ptr<grpc::ClientContext> Cluster::Context(milliseconds timeout) {
  auto context = std::make_unique<grpc::ClientContext>();
  context->set_deadline(std::chrono::system_clock::now() + timeout);
  context->set_wait_for_ready(true);
  return context;
}

namespace {
absl::Status FromGrpc(const grpc::Status& status) {
  if (status.ok()) return absl::OkStatus();
  return absl::Status(static_cast<absl::StatusCode>(status.error_code()), status.error_message());
}
}  // namespace

absl::StatusOr<v1::SubmitSweepResponse> Cluster::Submit(const v1::SweepSpec& spec) {
  v1::SubmitSweepRequest request;
  *request.mutable_spec() = spec;
  v1::SubmitSweepResponse response;
  if (absl::Status s = FromGrpc(
          sweeps().SubmitSweep(Context(std::chrono::seconds(60)).get(), request, &response));
      !s.ok()) {
    return s;
  }
  return response;
}

absl::StatusOr<v1::GetTrialResponse> Cluster::GetTrial(int64_t trial_id, bool curve) {
  v1::GetTrialRequest request;
  request.set_trial_id(trial_id);
  request.set_include_curve(curve);
  v1::GetTrialResponse response;
  if (absl::Status s = FromGrpc(sweeps().GetTrial(Context().get(), request, &response)); !s.ok()) {
    return s;
  }
  return response;
}

absl::StatusOr<std::vector<v1::Trial>> Cluster::ListTrials(int64_t sweep_id) {
  v1::ListTrialsRequest request;
  request.set_sweep_id(sweep_id);
  v1::ListTrialsResponse response;
  if (absl::Status s = FromGrpc(
          sweeps().ListTrials(Context(std::chrono::seconds(60)).get(), request, &response));
      !s.ok()) {
    return s;
  }
  return std::vector<v1::Trial>(response.trials().begin(), response.trials().end());
}

absl::StatusOr<v1::Sweep> Cluster::GetSweep(int64_t sweep_id) {
  v1::GetSweepRequest request;
  request.set_sweep_id(sweep_id);
  v1::Sweep response;
  if (absl::Status s = FromGrpc(sweeps().GetSweep(Context().get(), request, &response)); !s.ok()) {
    return s;
  }
  return response;
}

int Cluster::AliveWorkers() {
  v1::ListWorkersResponse response;
  if (!sweeps().ListWorkers(Context().get(), v1::ListWorkersRequest(), &response).ok()) return -1;
  int alive = 0;
  for (const v1::WorkerInfo& worker : response.workers()) alive += worker.alive() ? 1 : 0;
  return alive;
}

std::vector<pid_t> Cluster::worker_pids() const {
  std::vector<pid_t> pids;
  for (const ChildProcess* worker : workers_) pids.push_back(worker->pid());
  return pids;
}

bool Cluster::WaitUntil(const std::function<bool()>& condition, milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (true) {
    if (condition()) return true;
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(milliseconds(20));
  }
}

bool Cluster::WaitSweepFinished(int64_t sweep_id, milliseconds timeout) {
  return WaitUntil(
      [&] {
        absl::StatusOr<v1::Sweep> sweep = GetSweep(sweep_id);
        if (!sweep.ok()) return false;
        const v1::TrialCounts& c = sweep->counts();
        return c.total() > 0 && c.done() + c.failed() + c.cancelled() == c.total();
      },
      timeout);
}

void Cluster::DumpLogs() {
  keep_ = true;
  for (ChildProcess& child : children_) {
    std::cerr << "---- stderr of " << child.name() << " (pid " << child.pid() << ", "
              << child.stderr_path().filename() << "), last 6000 bytes:\n";
    const std::string text = ReadFile(child.stderr_path());
    std::cerr << (text.size() > 6000 ? text.substr(text.size() - 6000) : text) << "\n";
  }
}

}  // namespace bitsweep::e2e
