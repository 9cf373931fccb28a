// Child processes for end-to-end tests: started with fork/exec, stdout and stderr captured to
// files, waited for with a bound (pidfd + poll, no sleeping), always reaped.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

namespace bitsweep::e2e {

class ChildProcess {
 public:
  // Starts `argv[0]` with `argv`, stdout/stderr appended to the given files. The child gets
  // SIGKILL if the test process dies, so a killed test leaves no strays.
  // Returns nullopt (with `error` set) if the program cannot be started.
  static std::optional<ChildProcess> Start(const std::vector<std::string>& argv,
                                           const std::filesystem::path& stdout_path,
                                           const std::filesystem::path& stderr_path,
                                           std::string* error);
  ChildProcess(ChildProcess&& other) noexcept;
  ChildProcess& operator=(ChildProcess&&) = delete;
  ChildProcess(const ChildProcess&) = delete;
  ChildProcess& operator=(const ChildProcess&) = delete;
  // Stops and reaps the child if it is still running.
  ~ChildProcess();

  // Waits up to `timeout` for the child to exit. Returns its exit code (128 + signal when
  // killed by a signal), or nullopt if it is still running.
  std::optional<int> Wait(std::chrono::milliseconds timeout);
  // True once the child has exited (reaps it).
  bool Exited();
  // SIGTERM, up to `grace` to exit, then SIGKILL; always reaps. Returns the exit code.
  int Stop(std::chrono::milliseconds grace = std::chrono::seconds(10));
  // A file descriptor that polls readable when the child exits (-1 if unavailable).
  int exit_fd() const { return pidfd_; }
  pid_t pid() const { return pid_; }
  const std::string& name() const { return name_; }
  const std::filesystem::path& stderr_path() const { return stderr_path_; }
  const std::filesystem::path& stdout_path() const { return stdout_path_; }

 private:
  ChildProcess(pid_t pid, int pidfd, std::string name, std::filesystem::path stdout_path,
               std::filesystem::path stderr_path);
  std::optional<int> Reap(bool block);

  pid_t pid_ = -1;
  int pidfd_ = -1;
  std::optional<int> exit_code_;
  std::string name_;
  std::filesystem::path stdout_path_;
  std::filesystem::path stderr_path_;
};

struct CommandResult {
  int exit_code = -1;  // -1: did not finish in time (then it was killed)
  std::string out;
  std::string err;
};

// Runs a command to completion (killed after `timeout`), capturing its output through files
// under `dir` named after `label`.
CommandResult RunCommand(const std::vector<std::string>& argv, const std::filesystem::path& dir,
                         const std::string& label,
                         std::chrono::milliseconds timeout = std::chrono::seconds(60));

std::string ReadFile(const std::filesystem::path& path);

}  // namespace bitsweep::e2e
