#include "client/cli.h"

#include <sys/ioctl.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <cstdlib>
#include <functional>
#include <iostream>

#include "absl/strings/numbers.h"
#include "absl/strings/str_replace.h"
#include "client/analyze_command.h"
#include "client/cli_config.h"
#include "client/commands.h"
#include "client/completion.h"
#include "client/predict_command.h"
#include "client/quantize_command.h"
#include "client/sweep_client.h"
#include "client/train_command.h"
#include "common/bearer_token.h"
#include "common/channel_security.h"

namespace bitsweep::client {
namespace {

constexpr char kDefaultServer[] = "127.0.0.1:50051";

// Errors must stay on one line (scripts grep them); server messages may hold several.
std::string OneLine(absl::string_view message) {
  std::string line = absl::StrReplaceAll(message, {{"\r\n", "; "}, {"\n", "; "}, {"\r", " "}});
  while (!line.empty() && (line.back() == ' ' || line.back() == ';')) line.pop_back();
  return line;
}

void PrintError(std::ostream& err, absl::string_view message) {
  err << "bitsweep: error: " << OneLine(message) << std::endl;
}

std::string Footer(absl::string_view examples) {
  return std::string("Example:\n") + std::string(examples);
}

// What the command line asked for; `run` is set by the chosen command when it is parsed.
struct CommandLine {
  std::string server;
  std::string token_file;
  common::ChannelSecurity security;
  std::string file;
  bool dry_run = false;
  bool watch = false;
  bool resume = false;
  bool json = false;
  int64_t sweep_id = 0;
  std::vector<int64_t> sweep_ids;
  int64_t trial_id = 0;
  bool rerun_failed = false;
  bool rerun_cancelled = false;
  int tail = 10;
  std::string shell;
  ExportOptions export_options;
  // The command needs no server (completion): no config file is read, nothing is contacted.
  bool offline = false;
  std::function<absl::StatusOr<int>(SweepClient&, const CommandEnv&)> run;
};

void DefineCommands(CLI::App& app, CommandLine& line) {
  app.require_subcommand(1);
  // Lets --server come after the command name too: `bitsweep ls --server host:port`.
  app.fallthrough();
  app.add_option("--server", line.server,
                 "bitsweep-server address as host:port (env BITSWEEP_SERVER)")
      ->capture_default_str();
  app.add_option("--token-file", line.token_file,
                 "File holding the client bearer token (env BITSWEEP_TOKEN)");
  app.add_option("--tls-ca", line.security.tls_ca_file, "CA certificate (PEM): connect with TLS");
  app.add_option("--tls-cert", line.security.tls_cert_file,
                 "Client certificate (PEM) for mutual TLS");
  app.add_option("--tls-key", line.security.tls_key_file, "Client private key (PEM)");

  auto add_json_flag = [&](CLI::App* command) {
    command->add_flag("--json", line.json, "Print JSON instead of a table");
  };
  const CLI::Validator sweep_id_validator(
      [](std::string& text) -> std::string {
        int64_t id = 0;
        if (absl::SimpleAtoi(text, &id) && id > 0) return "";
        return "expected a positive sweep id, got '" + text + "'";
      },
      "ID");
  auto add_sweep_argument = [&](CLI::App* command) {
    command->add_option("SWEEP", line.sweep_id, "Sweep id (as printed by submit and ls)")
        ->required()
        ->check(sweep_id_validator);
  };
  // Callbacks run after parsing, so they see the parsed values through `line`.
  using Run = std::function<absl::StatusOr<int>(SweepClient&, const CommandEnv&)>;
  auto on_parse = [&line](CLI::App* command, Run run) {
    command->callback([&line, run = std::move(run)] { line.run = run; });
  };

  CLI::App* submit = app.add_subcommand("submit", "Validate a sweep file and submit it");
  submit->add_option("FILE", line.file, "Sweep file (YAML)")->required();
  CLI::Option* dry_run_flag =
      submit->add_flag("--dry-run", line.dry_run, "Validate and count the trials; store nothing");
  submit->add_flag("--watch", line.watch, "Watch the sweep's progress after submitting")
      ->excludes(dry_run_flag);
  submit
      ->add_flag("--resume", line.resume,
                 "If the server has a sweep with this spec, requeue its failed and cancelled "
                 "trials and keep its finished ones")
      ->excludes(dry_run_flag);
  submit->footer(
      Footer("  bitsweep submit examples/quickstart.yaml --watch\n"
             "  bitsweep submit sweep.yaml --dry-run\n"
             "  bitsweep submit sweep.yaml --resume   # after a crash: rerun what did not finish"));
  on_parse(submit, [&line](SweepClient& client, const CommandEnv& env) {
    return SubmitCommand(
        client, line.file,
        SubmitOptions{.dry_run = line.dry_run, .watch = line.watch, .resume = line.resume}, env);
  });

  CLI::App* ls = app.add_subcommand("ls", "List sweeps");
  add_json_flag(ls);
  ls->footer(Footer("  bitsweep ls --server 10.0.0.5:50051"));
  on_parse(ls, [&line](SweepClient& client, const CommandEnv& env) {
    return ListCommand(client, line.json, env);
  });

  CLI::App* status = app.add_subcommand("status", "Show one sweep's state and trial counts");
  add_sweep_argument(status);
  add_json_flag(status);
  status->footer(Footer("  bitsweep status 3 --json"));
  on_parse(status, [&line](SweepClient& client, const CommandEnv& env) {
    return StatusCommand(client, line.sweep_id, line.json, env);
  });

  CLI::App* watch = app.add_subcommand(
      "watch", "Follow sweeps until they end: progress, rate, ETA (exit 1 if any trial failed)");
  watch->add_option("SWEEP", line.sweep_ids, "Sweep ids (one progress bar each)")
      ->required()
      ->check(sweep_id_validator);
  watch->footer(
      Footer("  bitsweep watch 3\n"
             "  bitsweep watch 3 4 5   # one bar per sweep, then a summary table"));
  on_parse(watch, [&line](SweepClient& client, const CommandEnv& env) {
    return WatchCommand(client, line.sweep_ids, env);
  });

  CLI::App* results = app.add_subcommand(
      "results", "Show every trial's parameters and results (exit 1 if any trial failed)");
  add_sweep_argument(results);
  add_json_flag(results);
  results->footer(Footer("  bitsweep results 3\n  bitsweep results 3 --json > results.json"));
  on_parse(results, [&line](SweepClient& client, const CommandEnv& env) {
    return ResultsCommand(client, line.sweep_id, line.json, env);
  });

  CLI::App* export_command = app.add_subcommand(
      "export", "Write every trial (or every curve point) as CSV or JSON (exit 1 if any failed)");
  export_command->add_option("SWEEP", line.export_options.sweep_id, "Sweep id")
      ->required()
      ->check(CLI::PositiveNumber);
  export_command->add_option("--format", line.export_options.format, "csv or json")
      ->capture_default_str()
      ->check(CLI::IsMember({"csv", "json"}));
  export_command->add_flag("--curves", line.export_options.curves,
                           "One row per curve point instead of one per trial");
  export_command->add_option("-o,--output", line.export_options.output_path,
                             "Write to this file instead of stdout");
  export_command->footer(
      Footer("  bitsweep export 3 -o sweep3.csv\n"
             "  bitsweep export 3 --format json --curves -o curves3.json"));
  on_parse(export_command, [&line](SweepClient& client, const CommandEnv& env) {
    return ExportCommand(client, line.export_options, env);
  });

  CLI::App* logs = app.add_subcommand(
      "logs", "Show a trial's state, attempts, worker, error and last curve points");
  logs->add_option("TRIAL", line.trial_id, "Trial id (as in results and export)")
      ->required()
      ->check(CLI::PositiveNumber);
  logs->add_option("--tail", line.tail, "Curve points to show")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  add_json_flag(logs);
  logs->footer(Footer("  bitsweep logs 42\n  bitsweep logs 42 --tail 50 --json"));
  on_parse(logs, [&line](SweepClient& client, const CommandEnv& env) {
    return LogsCommand(client, line.trial_id, line.tail, line.json, env);
  });

  CLI::App* completion = app.add_subcommand("completion", "Print a shell completion script (bash)");
  completion->add_option("SHELL", line.shell, "Shell: bash")
      ->required()
      ->check(CLI::IsMember({"bash"}));
  completion->footer(
      Footer("  bitsweep completion bash > ~/.local/share/bash-completion/completions/bitsweep\n"
             "  source <(bitsweep completion bash)"));
  completion->callback([&line, &app] {
    line.offline = true;
    line.run = [&app](SweepClient&, const CommandEnv& env) -> absl::StatusOr<int> {
      *env.out << BashCompletionScript(app);
      return kExitOk;
    };
  });

  CLI::App* cancel = app.add_subcommand(
      "cancel", "Cancel a sweep's queued and running trials, or one trial (--trial)");
  CLI::Option* cancel_sweep =
      cancel->add_option("SWEEP", line.sweep_id, "Sweep id (as printed by submit and ls)")
          ->check(sweep_id_validator);
  cancel->add_option("--trial", line.trial_id, "Cancel only this trial (a running one is stopped)")
      ->check(CLI::PositiveNumber)
      ->excludes(cancel_sweep);
  cancel->footer(Footer("  bitsweep cancel 3\n  bitsweep cancel --trial 42"));
  cancel->callback([&line, cancel] {
    if (cancel->get_option("--trial")->count() > 0) {
      line.run = [&line](SweepClient& client, const CommandEnv& env) {
        return CancelTrialCommand(client, line.trial_id, env);
      };
    } else if (cancel->get_option("SWEEP")->count() > 0) {
      line.run = [&line](SweepClient& client, const CommandEnv& env) {
        return CancelCommand(client, line.sweep_id, env);
      };
    } else {
      throw CLI::ValidationError("cancel", "give a SWEEP id or --trial TRIAL");
    }
  });

  CLI::App* rerun = app.add_subcommand(
      "rerun", "Requeue a sweep's failed (and/or cancelled) trials with a fresh attempt budget");
  add_sweep_argument(rerun);
  rerun->add_flag("--failed", line.rerun_failed, "Requeue the failed trials");
  rerun->add_flag("--cancelled", line.rerun_cancelled, "Requeue the cancelled trials");
  rerun->footer(Footer("  bitsweep rerun 3 --failed\n  bitsweep rerun 3 --failed --cancelled"));
  on_parse(rerun, [&line](SweepClient& client, const CommandEnv& env) {
    return RerunCommand(client, line.sweep_id, line.rerun_failed, line.rerun_cancelled, env);
  });

  CLI::App* pause =
      app.add_subcommand("pause", "Start no new trials of a sweep (running ones finish)");
  add_sweep_argument(pause);
  pause->footer(Footer("  bitsweep pause 3"));
  on_parse(pause, [&line](SweepClient& client, const CommandEnv& env) {
    return PauseCommand(client, line.sweep_id, env);
  });

  CLI::App* resume = app.add_subcommand("resume", "Let a paused sweep start trials again");
  add_sweep_argument(resume);
  resume->footer(Footer("  bitsweep resume 3"));
  on_parse(resume, [&line](SweepClient& client, const CommandEnv& env) {
    return ResumeCommand(client, line.sweep_id, env);
  });

  CLI::App* workers = app.add_subcommand("workers", "List the workers known to the server");
  add_json_flag(workers);
  workers->footer(Footer("  bitsweep workers --json"));
  on_parse(workers, [&line](SweepClient& client, const CommandEnv& env) {
    return WorkersCommand(client, line.json, env);
  });

  // Set last: subcommands copy their parent's footer when created.
  app.footer(
      Footer("  bitsweep submit examples/quickstart.yaml --watch\n"
             "  bitsweep results 1\n\n"
             "Exit codes: 0 ok, 1 the sweep has failed trials, 2 usage or input error, "
             "3 server unreachable."));
}

}  // namespace

int ExitCodeForError(const absl::Status& status) {
  if (absl::IsUnavailable(status) || absl::IsDeadlineExceeded(status)) return kExitUnreachable;
  return kExitUsage;
}

int RunCli(const std::vector<std::string>& args, const CliEnvironment& env) {
  std::ostream& out = *env.out;
  std::ostream& err = *env.err;

  CLI::App app("Submit and inspect precision sweeps on a bitsweep server.", "bitsweep");
  CommandLine line;
  line.server = env.default_server.empty() ? kDefaultServer : env.default_server;
  DefineCommands(app, line);
  // Local commands (no server): they run with the process's stdin and a TTY check of stderr.
  const auto set_local_run = [&line](std::function<absl::StatusOr<int>()> run) {
    line.offline = true;
    line.run = [run](SweepClient&, const CommandEnv&) { return run(); };
  };
  AddQuantizeCommand(app, &std::cin, &out, set_local_run);
  AddTrainCommand(app, &out, &err, &err == &std::cerr && isatty(STDERR_FILENO) == 1, set_local_run);
  AddPredictCommand(app, &out, &err, set_local_run,
                    [&line](RemoteRun run) { line.run = std::move(run); });
  AddAnalyzeCommand(app, [&line](RemoteRun run) { line.run = std::move(run); });

  std::vector<const char*> argv;
  for (const std::string& arg : args) argv.push_back(arg.c_str());
  try {
    app.parse(static_cast<int>(argv.size()), argv.data());
  } catch (const CLI::ParseError& e) {
    // --help and friends exit 0 and print to `out`; real parse errors get our one-line format.
    if (e.get_exit_code() == static_cast<int>(CLI::ExitCodes::Success)) {
      return app.exit(e, out, err);
    }
    PrintError(err, std::string(e.what()) + " (see bitsweep --help)");
    return kExitUsage;
  }
  // Precedence: --server > BITSWEEP_SERVER (env.default_server) > config file > default.
  if (!line.offline && app.get_option("--server")->count() == 0 && env.default_server.empty() &&
      !env.config_path.empty()) {
    absl::StatusOr<CliConfig> config = ReadCliConfig(env.config_path);
    if (config.ok()) {
      if (!config->server.empty()) line.server = config->server;
    } else if (!absl::IsNotFound(config.status()) || env.config_path_explicit) {
      PrintError(err, config.status().message());
      return kExitUsage;
    }
  }
  if (line.server.empty()) {
    PrintError(err, "--server must not be empty");
    return kExitUsage;
  }
  if (!line.run) {  // require_subcommand(1) makes this unreachable.
    PrintError(err, "no command given (see bitsweep --help)");
    return kExitUsage;
  }

  SweepClientOptions client_options;
  client_options.address = line.server;
  client_options.connect_timeout = env.connect_timeout;
  client_options.call_timeout = env.call_timeout;
  if (!line.offline) {
    absl::StatusOr<std::string> token =
        common::LoadToken("--token-file", line.token_file, "BITSWEEP_TOKEN");
    if (!token.ok()) {
      PrintError(err, token.status().message());
      return kExitUsage;
    }
    client_options.token = *token;
    absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> credentials =
        common::MakeChannelCredentials(line.security);
    if (!credentials.ok()) {
      PrintError(err, credentials.status().message());
      return kExitUsage;
    }
    client_options.credentials = *credentials;
  }
  SweepClient client(client_options);
  const CommandEnv command_env{
      .out = &out, .interactive = env.interactive, .width = env.width, .clock = env.clock};
  const absl::StatusOr<int> exit_code = line.run(client, command_env);
  out.flush();
  if (!exit_code.ok()) {
    PrintError(err, exit_code.status().message());
    return ExitCodeForError(exit_code.status());
  }
  return *exit_code;
}

CliEnvironment DetectEnvironment() {
  CliEnvironment env;
  env.out = &std::cout;
  env.err = &std::cerr;
  env.interactive = isatty(STDOUT_FILENO) == 1;
  int columns = 0;
  if (const char* text = std::getenv("COLUMNS");
      text != nullptr && absl::SimpleAtoi(text, &columns) && columns > 0) {
    env.width = columns;
  } else if (env.interactive) {
    winsize size{};
    if (ioctl(STDOUT_FILENO, TIOCGWINSZ, &size) == 0 && size.ws_col > 0) env.width = size.ws_col;
  }
  if (const char* server = std::getenv("BITSWEEP_SERVER"); server != nullptr) {
    env.default_server = server;
  }
  env.config_path = CliConfigPath(&env.config_path_explicit);
  return env;
}

}  // namespace bitsweep::client
