// Bad input, table-driven, through the real SweepService/WorkerService over gRPC on 127.0.0.1
// port 0 (and the CLI's YAML parser where a user would meet the error first). Every case
// expects a specific status code and message substring, and checks that the database holds
// exactly what it held before (or exactly the intended change).
#include <gmock/gmock.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <functional>
#include <string>

#include "bitsweep/v1/sweep.grpc.pb.h"
#include "bitsweep/v1/worker.grpc.pb.h"
#include "client/sweep_file.h"
#include "server/server.h"
#include "tests/server/temp_dir.h"

namespace bitsweep::server {
namespace {

using ::testing::HasSubstr;

constexpr int64_t kMaxTrials = 1000;
constexpr int kMaxMessageBytes = 1 << 20;
constexpr int64_t kMaxCurvePoints = 5;

// What the database holds, as far as these tests can change it.
struct DbCounts {
  int64_t sweeps = 0;
  int64_t trials = 0;
  int64_t done = 0;
  int64_t failed = 0;
  int64_t cancelled = 0;
  bool operator==(const DbCounts&) const = default;
};

std::ostream& operator<<(std::ostream& out, const DbCounts& counts) {
  return out << "{sweeps " << counts.sweeps << ", trials " << counts.trials << ", done "
             << counts.done << ", failed " << counts.failed << ", cancelled " << counts.cancelled
             << "}";
}

class BadInputTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ServerOptions options;
    options.grpc_address = "127.0.0.1:0";
    options.http_address = "";
    options.db_path = dir_.File("bad_input.db");
    options.max_trials = kMaxTrials;
    options.max_message_bytes = kMaxMessageBytes;
    options.max_curve_points_per_trial = kMaxCurvePoints;
    ASSERT_TRUE(server_.Start(options).ok());
    grpc::ChannelArguments args;
    args.SetMaxSendMessageSize(64 << 20);  // so that oversized requests reach the server
    auto channel = grpc::CreateCustomChannel("127.0.0.1:" + std::to_string(server_.grpc_port()),
                                             grpc::InsecureChannelCredentials(), args);
    sweeps_ = v1::SweepService::NewStub(channel);
    workers_ = v1::WorkerService::NewStub(channel);
  }

  DbCounts Counts() {
    DbCounts counts;
    absl::StatusOr<std::vector<v1::Sweep>> sweeps = server_.store()->ListSweeps();
    EXPECT_TRUE(sweeps.ok()) << sweeps.status();
    if (!sweeps.ok()) return counts;
    for (const v1::Sweep& sweep : *sweeps) {
      ++counts.sweeps;
      counts.trials += sweep.counts().total();
      counts.done += sweep.counts().done();
      counts.failed += sweep.counts().failed();
      counts.cancelled += sweep.counts().cancelled();
    }
    return counts;
  }

  grpc::Status Submit(const v1::SweepSpec& spec, int64_t* sweep_id = nullptr) {
    grpc::ClientContext context;
    v1::SubmitSweepRequest request;
    *request.mutable_spec() = spec;
    v1::SubmitSweepResponse response;
    grpc::Status status = sweeps_->SubmitSweep(&context, request, &response);
    if (sweep_id != nullptr) *sweep_id = response.sweep_id();
    return status;
  }

  // A valid sweep of `trials` trials on the synthetic dataset; returns its id.
  int64_t SubmitValid(int trials = 2) {
    v1::SweepSpec spec;
    spec.set_name("valid");
    spec.set_seeds(trials);
    (*spec.mutable_base()->mutable_fields())["dataset"]
        .mutable_struct_value()
        ->mutable_fields()
        ->
        operator[]("name")
        .set_string_value("synthetic");
    int64_t sweep_id = 0;
    grpc::Status status = Submit(spec, &sweep_id);
    EXPECT_TRUE(status.ok()) << status.error_message();
    return sweep_id;
  }

  void Register() {
    grpc::ClientContext context;
    v1::RegisterWorkerRequest request;
    request.set_worker_id("w1");
    request.set_incarnation("inc");
    request.set_slots(1);
    v1::RegisterWorkerResponse response;
    grpc::Status status = workers_->RegisterWorker(&context, request, &response);
    ASSERT_TRUE(status.ok()) << status.error_message();
  }

  v1::TrialRef Lease() {
    grpc::ClientContext context;
    v1::LeaseTrialRequest request;
    request.set_worker_id("w1");
    request.set_incarnation("inc");
    v1::LeaseTrialResponse response;
    grpc::Status status = workers_->LeaseTrial(&context, request, &response);
    EXPECT_TRUE(status.ok()) << status.error_message();
    EXPECT_TRUE(response.has_trial());
    return response.ref();
  }

  grpc::Status Progress(const v1::TrialRef& ref, int points = 1) {
    grpc::ClientContext context;
    v1::ReportProgressRequest request;
    request.set_worker_id("w1");
    *request.mutable_ref() = ref;
    for (int i = 0; i < points; ++i) {
      v1::CurvePoint* point = request.add_points();
      point->set_iteration(i + 1);
      point->set_train_loss(1.0);
    }
    v1::ReportProgressResponse response;
    return workers_->ReportProgress(&context, request, &response);
  }

  grpc::Status Complete(const v1::TrialRef& ref, bool with_error = false) {
    grpc::ClientContext context;
    v1::CompleteTrialRequest request;
    request.set_worker_id("w1");
    *request.mutable_ref() = ref;
    if (with_error) {
      request.set_error("boom");
    } else {
      request.mutable_result()->set_final_test_accuracy(0.5);
    }
    v1::CompleteTrialResponse response;
    return workers_->CompleteTrial(&context, request, &response);
  }

  grpc::Status Cancel(int64_t sweep_id) {
    grpc::ClientContext context;
    v1::CancelSweepRequest request;
    request.set_sweep_id(sweep_id);
    v1::Sweep response;
    return sweeps_->CancelSweep(&context, request, &response);
  }

  testing::TempDir dir_;
  Server server_;
  std::unique_ptr<v1::SweepService::Stub> sweeps_;
  std::unique_ptr<v1::WorkerService::Stub> workers_;
};

// ---------------------------------------------------------------------------------------------
// Sweep files: parsed by the CLI's parser, then submitted. A case fails either in the parser
// (the user sees it before anything is sent) or at the server.

enum class Stage { kParser, kServer };

struct SweepFileCase {
  const char* name;
  std::string yaml;
  Stage stage;
  grpc::StatusCode code;
  const char* message;
};

// A minimal valid sweep file around one parameter line and base overrides.
std::string Sweep(const std::string& parameters, const std::string& base_train = "{}",
                  const std::string& dataset = "synthetic") {
  return "name: bad\nbase:\n  dataset: {name: " + dataset + "}\n  train: " + base_train +
         "\nsweep:\n  parameters:\n    " + parameters + "\n";
}

std::vector<SweepFileCase> SweepFileCases() {
  using grpc::StatusCode;
  const StatusCode kInvalid = StatusCode::INVALID_ARGUMENT;
  return {
      // Malformed YAML and structure.
      {"UnclosedBracket", "name: x\nsweep: {parameters: [", Stage::kParser, kInvalid, "bad.yaml"},
      {"TabIndentation", "name: x\nsweep:\n\tparameters: {}\n", Stage::kParser, kInvalid,
       "bad.yaml"},
      {"EmptyDocument", "", Stage::kParser, kInvalid, "empty"},
      {"TopLevelList", "- a\n- b\n", Stage::kParser, kInvalid, "bad.yaml"},
      {"UnknownTopLevelKey", "name: x\nbogus: 1\n", Stage::kParser, kInvalid, "bogus"},
      {"UnknownSweepKey", "name: x\nsweep: {bogus: 1}\n", Stage::kParser, kInvalid, "bogus"},
      {"ParameterNotAList", Sweep("train.batch_size: 32"), Stage::kParser, kInvalid,
       "train.batch_size"},
      {"SeedsNotANumber", "name: x\nsweep: {seeds: many}\n", Stage::kParser, kInvalid, "seeds"},
      // Names.
      {"MissingName", "sweep: {seeds: 1}\n", Stage::kParser, kInvalid,
       "name: required key is missing"},
      {"NameTooLong", "name: " + std::string(1000, 'n') + "\n", Stage::kServer, kInvalid,
       "name: longer than"},
      // Method and seeds.
      {"UnknownMethod", "name: x\nsweep: {method: annealing}\n", Stage::kServer, kInvalid,
       "'annealing' is not supported (known: grid, random, bisect)"},
      {"RandomWithoutSamples", "name: x\nsweep: {method: random}\n", Stage::kServer, kInvalid,
       "sweep.samples: 0 must be at least 1"},
      {"NegativeSeeds", "name: x\nsweep: {seeds: -1}\n", Stage::kServer, kInvalid,
       "sweep.seeds: -1"},
      // Unknown paths and fields.
      {"UnknownParameterPath", Sweep("train.bogus: [1, 2]"), Stage::kServer, kInvalid,
       "train.bogus: unknown field (known:"},
      {"UnknownTopLevelPath", Sweep("nonsense.field: [1]"), Stage::kServer, kInvalid,
       "unknown field 'nonsense'"},
      {"EmptyPathSegment", Sweep("train..lr: [0.1]"), Stage::kServer, kInvalid,
       "empty path segment"},
      {"UnknownBaseField", "name: x\nbase: {train: {bogus: 1}}\n", Stage::kServer, kInvalid,
       "bogus"},
      {"SeedAsParameter", Sweep("seed: [1, 2]"), Stage::kServer, kInvalid, "seed"},
      // Wrong types.
      {"BatchSizeString", Sweep("train.batch_size: [abc]"), Stage::kServer, kInvalid,
       "train.batch_size"},
      {"BatchSizeFraction", Sweep("train.batch_size: [32.5]"), Stage::kServer, kInvalid,
       "an integer"},
      {"LrString", Sweep("train.lr: [fast]"), Stage::kServer, kInvalid, "a number"},
      {"EpochsList", Sweep("train.epochs: [[1, 2]]"), Stage::kServer, kInvalid, "train.epochs"},
      {"ModelAsNumber", Sweep("model: [3]"), Stage::kServer, kInvalid, "a map"},
      {"NullValue", Sweep("train.lr: [null]"), Stage::kServer, kInvalid, "null is not allowed"},
      // Out of range.
      {"ZeroBatchSize", Sweep("train.batch_size: [0]"), Stage::kServer, kInvalid,
       "train.batch_size"},
      {"NegativeBatchSize", Sweep("train.batch_size: [-8]"), Stage::kServer, kInvalid,
       "train.batch_size"},
      {"EmptyValues", Sweep("train.batch_size: []"), Stage::kParser, kInvalid,
       "the list of values is empty"},
      {"HugeGrid",
       Sweep("train.batch_size: [1,2,3,4,5,6,7,8,9,10]\n    train.lr: [1,2,3,4,5,6,7,8,9,10]\n"
             "    train.epochs: [1,2,3,4,5,6,7,8,9,10,11]"),
       Stage::kServer, kInvalid, "exceed the limit of 1000"},
      // Precision formats.
      {"MaskTooNarrow", Sweep("precision.default.format: [\"mask:8\"]"), Stage::kServer, kInvalid,
       "mask:8"},
      {"MaskTooWide", Sweep("precision.default.format: [\"mask:33\"]"), Stage::kServer, kInvalid,
       "mask:33"},
      {"MaskNegative", Sweep("precision.default.format: [\"mask:-4\"]"), Stage::kServer, kInvalid,
       "mask:-4"},
      {"FloatExponentTooWide", Sweep("precision.default.format: [\"float:9,3\"]"), Stage::kServer,
       kInvalid, "float:9,3"},
      {"FixedFractionBeyondWord", Sweep("precision.default.format: [\"fixed:8,9\"]"),
       Stage::kServer, kInvalid, "fixed:8,9"},
      {"FixedZeroWidth", Sweep("precision.default.format: [\"fixed:0,0\"]"), Stage::kServer,
       kInvalid, "fixed:0,0"},
      {"UnknownFormat", Sweep("precision.default.format: [int4]"), Stage::kServer, kInvalid,
       "int4"},
      {"UnknownRounding", Sweep("precision.default.rounding: [sideways]"), Stage::kServer, kInvalid,
       "sideways"},
      // Datasets: a known name only; paths never reach the file system.
      {"UnknownDataset", Sweep("train.batch_size: [32]", "{}", "imagenet"), Stage::kServer,
       kInvalid, "unknown dataset 'imagenet'"},
      {"DatasetParentPath", Sweep("train.batch_size: [32]", "{}", "../etc"), Stage::kServer,
       kInvalid, "unknown dataset '../etc'"},
      {"DatasetAbsolutePath", Sweep("train.batch_size: [32]", "{}", "/etc/passwd"), Stage::kServer,
       kInvalid, "unknown dataset '/etc/passwd'"},
      {"DatasetNestedPath", Sweep("train.batch_size: [32]", "{}", "mnist/../../x"), Stage::kServer,
       kInvalid, "unknown dataset"},
  };
}

class SweepFileCaseTest : public BadInputTest,
                          public ::testing::WithParamInterface<SweepFileCase> {};

TEST_P(SweepFileCaseTest, RejectedWithMessage_NothingStored) {
  const SweepFileCase& test_case = GetParam();
  SubmitValid();  // something already stored that must stay as it is
  const DbCounts before = Counts();

  absl::StatusOr<v1::SweepSpec> spec = client::ParseSweepYaml(test_case.yaml, "bad.yaml");
  if (test_case.stage == Stage::kParser) {
    ASSERT_FALSE(spec.ok()) << "the parser accepted it";
    EXPECT_EQ(static_cast<int>(spec.status().code()), static_cast<int>(test_case.code));
    EXPECT_THAT(spec.status().message(), HasSubstr(test_case.message));
  } else {
    ASSERT_TRUE(spec.ok()) << spec.status();
    grpc::Status status = Submit(*spec);
    EXPECT_EQ(status.error_code(), test_case.code) << status.error_message();
    EXPECT_THAT(status.error_message(), HasSubstr(test_case.message));
  }
  EXPECT_EQ(Counts(), before);
}

INSTANTIATE_TEST_SUITE_P(BadSweepFiles, SweepFileCaseTest, ::testing::ValuesIn(SweepFileCases()),
                         [](const ::testing::TestParamInfo<SweepFileCase>& case_info) {
                           return std::string(case_info.param.name);
                         });

// ---------------------------------------------------------------------------------------------
// Requests built directly (what a misbehaving or hostile client or worker could send).

struct RequestCase {
  const char* name;
  // Runs the bad request after whatever set-up it needs; returns its status and fills
  // `expected` with the database it should leave (the set-up's effect included).
  std::function<grpc::Status(BadInputTest&, DbCounts* expected)> run;
  grpc::StatusCode code;
  const char* message;
};

class RequestCaseTest : public BadInputTest, public ::testing::WithParamInterface<RequestCase> {
 public:
  using BadInputTest::Cancel;
  using BadInputTest::Complete;
  using BadInputTest::Counts;
  using BadInputTest::Lease;
  using BadInputTest::Progress;
  using BadInputTest::Register;
  using BadInputTest::Submit;
  using BadInputTest::SubmitValid;
  TrialStore* store() { return server_.store(); }
  v1::WorkerService::Stub* workers() { return workers_.get(); }
  v1::SweepService::Stub* sweeps() { return sweeps_.get(); }
};

// A valid synthetic-dataset spec sweeping the default format over three values.
v1::SweepSpec FormatSweep(const std::string& name) {
  v1::SweepSpec spec;
  spec.set_name(name);
  (*spec.mutable_base()->mutable_fields())["dataset"]
      .mutable_struct_value()
      ->mutable_fields()
      ->
      operator[]("name")
      .set_string_value("synthetic");
  v1::SweepParameter* parameter = spec.add_parameters();
  parameter->set_path("precision.default.format");
  for (const char* format : {"mask:12", "mask:16", "mask:20"}) {
    parameter->mutable_values()->add_values()->set_string_value(format);
  }
  return spec;
}

grpc::Status UploadCheckpoint(RequestCaseTest& t, const v1::TrialRef& ref, size_t bytes = 16) {
  grpc::ClientContext context;
  v1::UploadCheckpointRequest request;
  request.set_worker_id("w1");
  *request.mutable_ref() = ref;
  request.set_iteration(1);
  request.set_state(std::string(bytes, 's'));
  v1::UploadCheckpointResponse response;
  return t.workers()->UploadCheckpoint(&context, request, &response);
}

v1::TrialRef Ref(int64_t trial_id, int32_t attempt) {
  v1::TrialRef ref;
  ref.set_trial_id(trial_id);
  ref.set_attempt(attempt);
  return ref;
}

std::vector<RequestCase> RequestCases() {
  using grpc::StatusCode;
  return {
      {"OversizedSpec",
       [](BadInputTest& base, DbCounts* expected) {
         auto& t = static_cast<RequestCaseTest&>(base);
         *expected = t.Counts();
         v1::SweepSpec spec;
         spec.set_name(std::string(kMaxMessageBytes + 1024, 'x'));
         return t.Submit(spec);
       },
       StatusCode::RESOURCE_EXHAUSTED, "larger than max"},
      {"ProgressForUnknownTrial",
       [](BadInputTest& base, DbCounts* expected) {
         auto& t = static_cast<RequestCaseTest&>(base);
         *expected = t.Counts();
         return t.Progress(Ref(987654, 1));
       },
       StatusCode::NOT_FOUND, "trial 987654 not found"},
      {"CompleteForUnknownTrial",
       [](BadInputTest& base, DbCounts* expected) {
         auto& t = static_cast<RequestCaseTest&>(base);
         *expected = t.Counts();
         return t.Complete(Ref(987654, 1));
       },
       StatusCode::NOT_FOUND, "trial 987654 not found"},
      {"ProgressWithStaleAttempt",
       [](BadInputTest& base, DbCounts* expected) {
         auto& t = static_cast<RequestCaseTest&>(base);
         t.SubmitValid(1);
         t.Register();
         v1::TrialRef ref = t.Lease();
         *expected = t.Counts();
         return t.Progress(Ref(ref.trial_id(), ref.attempt() + 1));
       },
       StatusCode::FAILED_PRECONDITION, "attempt"},
      {"CompleteWithStaleAttempt",
       [](BadInputTest& base, DbCounts* expected) {
         auto& t = static_cast<RequestCaseTest&>(base);
         t.SubmitValid(1);
         t.Register();
         v1::TrialRef ref = t.Lease();
         *expected = t.Counts();
         return t.Complete(Ref(ref.trial_id(), ref.attempt() + 1));
       },
       StatusCode::FAILED_PRECONDITION, "attempt"},
      {"CompleteTwice",
       [](BadInputTest& base, DbCounts* expected) {
         auto& t = static_cast<RequestCaseTest&>(base);
         t.SubmitValid(1);
         t.Register();
         v1::TrialRef ref = t.Lease();
         EXPECT_TRUE(t.Complete(ref).ok());
         *expected = t.Counts();
         EXPECT_EQ(expected->done, 1);
         return t.Complete(ref);
       },
       StatusCode::FAILED_PRECONDITION, "trial"},
      {"ProgressAfterCancel",
       [](BadInputTest& base, DbCounts* expected) {
         auto& t = static_cast<RequestCaseTest&>(base);
         int64_t sweep_id = t.SubmitValid(1);
         t.Register();
         v1::TrialRef ref = t.Lease();
         EXPECT_TRUE(t.Cancel(sweep_id).ok());
         *expected = t.Counts();
         EXPECT_EQ(expected->cancelled, 1);
         // Not an error: the reply tells the worker to stop, and the point is dropped.
         grpc::ClientContext context;
         v1::ReportProgressRequest request;
         request.set_worker_id("w1");
         *request.mutable_ref() = ref;
         request.add_points()->set_iteration(1);
         v1::ReportProgressResponse response;
         grpc::Status status = t.workers()->ReportProgress(&context, request, &response);
         EXPECT_TRUE(response.stop());
         return status;
       },
       StatusCode::OK, ""},
      {"CompleteAfterCancel",
       [](BadInputTest& base, DbCounts* expected) {
         auto& t = static_cast<RequestCaseTest&>(base);
         int64_t sweep_id = t.SubmitValid(1);
         t.Register();
         v1::TrialRef ref = t.Lease();
         EXPECT_TRUE(t.Cancel(sweep_id).ok());
         *expected = t.Counts();
         // Accepted and dropped: the trial stays cancelled (the counts check it).
         return t.Complete(ref);
       },
       StatusCode::OK, ""},
      {"TooManyCurvePoints",
       [](BadInputTest& base, DbCounts* expected) {
         auto& t = static_cast<RequestCaseTest&>(base);
         t.SubmitValid(1);
         t.Register();
         v1::TrialRef ref = t.Lease();
         EXPECT_TRUE(t.Progress(ref, 3).ok());
         *expected = t.Counts();
         grpc::Status status = t.Progress(ref, 3);  // 6 > 5: refused whole
         absl::StatusOr<std::vector<v1::CurvePoint>> curve = t.store()->GetCurve(ref.trial_id());
         EXPECT_TRUE(curve.ok() && curve->size() == 3u);
         return status;
       },
       StatusCode::RESOURCE_EXHAUSTED, "more than 5 curve points"},
      {"SpecWithoutName",
       [](BadInputTest& base, DbCounts* expected) {
         auto& t = static_cast<RequestCaseTest&>(base);
         *expected = t.Counts();
         return t.Submit(v1::SweepSpec());
       },
       StatusCode::INVALID_ARGUMENT, "name: must not be empty"},
      {"ParameterWithoutValues",
       [](BadInputTest& base, DbCounts* expected) {
         auto& t = static_cast<RequestCaseTest&>(base);
         *expected = t.Counts();
         v1::SweepSpec spec;
         spec.set_name("x");
         spec.add_parameters()->set_path("train.lr");
         return t.Submit(spec);
       },
       StatusCode::INVALID_ARGUMENT, "needs at least one value"},
      {"ParameterWithoutPath",
       [](BadInputTest& base, DbCounts* expected) {
         auto& t = static_cast<RequestCaseTest&>(base);
         *expected = t.Counts();
         v1::SweepSpec spec;
         spec.set_name("x");
         spec.add_parameters()->mutable_values()->add_values()->set_number_value(1);
         return t.Submit(spec);
       },
       StatusCode::INVALID_ARGUMENT, "sweep.parameters[0]: empty path"},
      {"DuplicateParameterPath",
       [](BadInputTest& base, DbCounts* expected) {
         auto& t = static_cast<RequestCaseTest&>(base);
         *expected = t.Counts();
         v1::SweepSpec spec;
         spec.set_name("x");
         for (int i = 0; i < 2; ++i) {
           v1::SweepParameter* parameter = spec.add_parameters();
           parameter->set_path("train.lr");
           parameter->mutable_values()->add_values()->set_number_value(0.1);
         }
         return t.Submit(spec);
       },
       StatusCode::INVALID_ARGUMENT, "listed more than once"},
      {"CompleteWithoutOutcome",
       [](BadInputTest& base, DbCounts* expected) {
         auto& t = static_cast<RequestCaseTest&>(base);
         t.SubmitValid(1);
         t.Register();
         v1::TrialRef ref = t.Lease();
         *expected = t.Counts();
         grpc::ClientContext context;
         v1::CompleteTrialRequest request;
         request.set_worker_id("w1");
         *request.mutable_ref() = ref;
         v1::CompleteTrialResponse response;
         return static_cast<RequestCaseTest&>(base).workers()->CompleteTrial(&context, request,
                                                                             &response);
       },
       StatusCode::INVALID_ARGUMENT, "outcome"},
      {"LeaseByUnregisteredWorker",
       [](BadInputTest& base, DbCounts* expected) {
         auto& t = static_cast<RequestCaseTest&>(base);
         t.SubmitValid(1);
         *expected = t.Counts();
         grpc::ClientContext context;
         v1::LeaseTrialRequest request;
         request.set_worker_id("stranger");
         request.set_incarnation("x");
         v1::LeaseTrialResponse response;
         return t.workers()->LeaseTrial(&context, request, &response);
       },
       StatusCode::NOT_FOUND, "stranger"},
      {"CancelUnknownSweep",
       [](BadInputTest& base, DbCounts* expected) {
         auto& t = static_cast<RequestCaseTest&>(base);
         t.SubmitValid(1);
         *expected = t.Counts();
         return t.Cancel(424242);
       },
       StatusCode::NOT_FOUND, "sweep 424242 not found"},
      {"CancelNegativeSweepId",
       [](BadInputTest& base, DbCounts* expected) {
         auto& t = static_cast<RequestCaseTest&>(base);
         *expected = t.Counts();
         return t.Cancel(-1);
       },
       StatusCode::NOT_FOUND, "sweep -1 not found"},
      {"GetUnknownSweep",
       [](BadInputTest& base, DbCounts* expected) {
         auto& t = static_cast<RequestCaseTest&>(base);
         *expected = t.Counts();
         grpc::ClientContext context;
         v1::GetSweepRequest request;
         request.set_sweep_id(5);
         v1::Sweep response;
         return t.sweeps()->GetSweep(&context, request, &response);
       },
       StatusCode::NOT_FOUND, "sweep 5 not found"},
      // Search methods and pruning (issue 4): validated at submit, nothing stored.
      {"BisectAxisNotSwept",
       [](BadInputTest& base, DbCounts* expected) {
         auto& t = static_cast<RequestCaseTest&>(base);
         *expected = t.Counts();
         v1::SweepSpec spec = FormatSweep("bisect");
         spec.set_method("bisect");
         spec.mutable_bisect()->set_axis("precision.weights.format");
         return t.Submit(spec);
       },
       StatusCode::INVALID_ARGUMENT,
       "sweep.bisect.axis: 'precision.weights.format' is not a swept parameter (swept: "
       "precision.default.format)"},
      {"BisectAxisNotAFormat",
       [](BadInputTest& base, DbCounts* expected) {
         auto& t = static_cast<RequestCaseTest&>(base);
         *expected = t.Counts();
         v1::SweepSpec spec = FormatSweep("bisect");
         spec.set_method("bisect");
         v1::SweepParameter* batch = spec.add_parameters();
         batch->set_path("train.batch_size");
         batch->mutable_values()->add_values()->set_number_value(32);
         spec.mutable_bisect()->set_axis("train.batch_size");
         return t.Submit(spec);
       },
       StatusCode::INVALID_ARGUMENT, "sweep.bisect.axis: 'train.batch_size' is not a precision"},
      {"RandomSamplesNegative",
       [](BadInputTest& base, DbCounts* expected) {
         auto& t = static_cast<RequestCaseTest&>(base);
         *expected = t.Counts();
         v1::SweepSpec spec = FormatSweep("random");
         spec.set_method("random");
         spec.set_samples(-2);
         return t.Submit(spec);
       },
       StatusCode::INVALID_ARGUMENT, "sweep.samples: -2 must be at least 1"},
      {"RandomSamplesExceedGrid",
       [](BadInputTest& base, DbCounts* expected) {
         auto& t = static_cast<RequestCaseTest&>(base);
         *expected = t.Counts();
         v1::SweepSpec spec = FormatSweep("random");
         spec.set_method("random");
         spec.set_samples(4);
         return t.Submit(spec);
       },
       StatusCode::INVALID_ARGUMENT, "sweep.samples: 4 exceeds the grid's 3 points"},
      {"PruningRuleUnknown",
       [](BadInputTest& base, DbCounts* expected) {
         auto& t = static_cast<RequestCaseTest&>(base);
         *expected = t.Counts();
         v1::SweepSpec spec = FormatSweep("pruned");
         spec.mutable_pruning()->set_rule("hyperband");
         spec.mutable_pruning()->add_at_iterations(100);
         return t.Submit(spec);
       },
       StatusCode::INVALID_ARGUMENT, "sweep.pruning.rule: 'hyperband' is unknown (known: median)"},
      // Sweep and trial control.
      {"RerunUnknownSweep",
       [](BadInputTest& base, DbCounts* expected) {
         auto& t = static_cast<RequestCaseTest&>(base);
         *expected = t.Counts();
         grpc::ClientContext context;
         v1::RerunSweepRequest request;
         request.set_sweep_id(77);
         request.set_failed(true);
         v1::RerunSweepResponse response;
         return t.sweeps()->RerunSweep(&context, request, &response);
       },
       StatusCode::NOT_FOUND, "sweep 77 not found"},
      {"PauseFinishedSweep",
       [](BadInputTest& base, DbCounts* expected) {
         auto& t = static_cast<RequestCaseTest&>(base);
         int64_t sweep_id = t.SubmitValid(1);
         t.Register();
         EXPECT_TRUE(t.Complete(t.Lease()).ok());
         *expected = t.Counts();
         grpc::ClientContext context;
         v1::PauseSweepRequest request;
         request.set_sweep_id(sweep_id);
         v1::Sweep response;
         return t.sweeps()->PauseSweep(&context, request, &response);
       },
       StatusCode::FAILED_PRECONDITION, "is done: there is nothing to pause"},
      // Checkpoints.
      {"StaleCheckpointUpload",
       [](BadInputTest& base, DbCounts* expected) {
         auto& t = static_cast<RequestCaseTest&>(base);
         t.SubmitValid(1);
         t.Register();
         v1::TrialRef ref = t.Lease();
         *expected = t.Counts();
         return UploadCheckpoint(t, Ref(ref.trial_id(), ref.attempt() - 1));
       },
       StatusCode::FAILED_PRECONDITION, "attempt 0 is stale (current attempt 1)"},
      {"CheckpointForCancelledTrial",
       [](BadInputTest& base, DbCounts* expected) {
         auto& t = static_cast<RequestCaseTest&>(base);
         int64_t sweep_id = t.SubmitValid(1);
         t.Register();
         v1::TrialRef ref = t.Lease();
         EXPECT_TRUE(t.Cancel(sweep_id).ok());
         *expected = t.Counts();
         return UploadCheckpoint(t, ref);
       },
       StatusCode::FAILED_PRECONDITION, "is not running (state TRIAL_STATE_CANCELLED)"},
      {"CheckpointForQueuedTrial",
       [](BadInputTest& base, DbCounts* expected) {
         auto& t = static_cast<RequestCaseTest&>(base);
         t.SubmitValid(1);
         *expected = t.Counts();
         return UploadCheckpoint(t, Ref(1, 0));
       },
       StatusCode::FAILED_PRECONDITION, "is not leased to worker 'w1'"},
      {"OversizedCheckpoint",
       [](BadInputTest& base, DbCounts* expected) {
         auto& t = static_cast<RequestCaseTest&>(base);
         t.SubmitValid(1);
         t.Register();
         v1::TrialRef ref = t.Lease();
         *expected = t.Counts();
         return UploadCheckpoint(t, ref, kMaxMessageBytes + 1024);
       },
       StatusCode::RESOURCE_EXHAUSTED, "larger than max"},
  };
}

TEST_P(RequestCaseTest, RejectedWithMessage_DatabaseAsExpected) {
  const RequestCase& test_case = GetParam();
  DbCounts expected;
  grpc::Status status = test_case.run(*this, &expected);
  EXPECT_EQ(status.error_code(), test_case.code) << status.error_message();
  EXPECT_THAT(status.error_message(), HasSubstr(test_case.message));
  EXPECT_EQ(Counts(), expected);
}

INSTANTIATE_TEST_SUITE_P(BadRequests, RequestCaseTest, ::testing::ValuesIn(RequestCases()),
                         [](const ::testing::TestParamInfo<RequestCase>& case_info) {
                           return std::string(case_info.param.name);
                         });

// ---------------------------------------------------------------------------------------------
// Names that look like attacks are data: stored verbatim and read back identical.

class VerbatimNameTest : public BadInputTest, public ::testing::WithParamInterface<const char*> {};

TEST_P(VerbatimNameTest, StoredAndReadBackIdentical) {
  v1::SweepSpec spec;
  spec.set_name(GetParam());
  int64_t sweep_id = 0;
  grpc::Status status = Submit(spec, &sweep_id);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(Counts().sweeps, 1);
  grpc::ClientContext context;
  v1::GetSweepRequest request;
  request.set_sweep_id(sweep_id);
  v1::Sweep sweep;
  ASSERT_TRUE(sweeps_->GetSweep(&context, request, &sweep).ok());
  EXPECT_EQ(sweep.name(), GetParam());
  EXPECT_EQ(sweep.spec().name(), GetParam());
}

INSTANTIATE_TEST_SUITE_P(Names, VerbatimNameTest,
                         ::testing::Values("Robert'); DROP TABLE sweeps;--", "\" OR 1=1 --",
                                           "名前 ✓ émoji 🚀", "%s%n%x", "<script>x</script>"));

}  // namespace
}  // namespace bitsweep::server
