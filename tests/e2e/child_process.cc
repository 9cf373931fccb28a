#include "tests/e2e/child_process.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

namespace bitsweep::e2e {
namespace {

int PidfdOpen(pid_t pid) {
#ifdef SYS_pidfd_open
  return static_cast<int>(syscall(SYS_pidfd_open, pid, 0));
#else
  (void)pid;
  return -1;
#endif
}

int DecodeWaitStatus(int status) {
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return -1;
}

}  // namespace

std::optional<ChildProcess> ChildProcess::Start(const std::vector<std::string>& argv,
                                                const std::filesystem::path& stdout_path,
                                                const std::filesystem::path& stderr_path,
                                                std::string* error) {
  if (argv.empty()) {
    *error = "empty argv";
    return std::nullopt;
  }
  // Everything the child needs is prepared before fork: after it only async-signal-safe calls.
  std::vector<char*> args;
  for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  const int out_fd = open(stdout_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  const int err_fd = open(stderr_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (out_fd < 0 || err_fd < 0) {
    *error = "cannot open output files: " + std::string(std::strerror(errno));
    if (out_fd >= 0) close(out_fd);
    if (err_fd >= 0) close(err_fd);
    return std::nullopt;
  }
  int exec_pipe[2];
  if (pipe2(exec_pipe, O_CLOEXEC) != 0) {
    *error = "pipe2 failed";
    close(out_fd);
    close(err_fd);
    return std::nullopt;
  }
  const pid_t parent = getpid();
  const pid_t pid = fork();
  if (pid == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent) _exit(127);  // the test died between fork and prctl
    // Signals blocked in the test (e.g. by gRPC threads) must not stay blocked in the child.
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, nullptr);
    dup2(out_fd, STDOUT_FILENO);
    dup2(err_fd, STDERR_FILENO);
    const int devnull = open("/dev/null", O_RDONLY);
    if (devnull >= 0) dup2(devnull, STDIN_FILENO);
    execv(args[0], args.data());
    const int code = errno;
    (void)!write(exec_pipe[1], &code, sizeof(code));
    _exit(127);
  }
  close(out_fd);
  close(err_fd);
  close(exec_pipe[1]);
  if (pid < 0) {
    close(exec_pipe[0]);
    *error = "fork failed";
    return std::nullopt;
  }
  // The pipe closes on a successful exec; otherwise it carries errno.
  int exec_errno = 0;
  const ssize_t n = read(exec_pipe[0], &exec_errno, sizeof(exec_errno));
  close(exec_pipe[0]);
  if (n == sizeof(exec_errno)) {
    waitpid(pid, nullptr, 0);
    *error = "cannot execute " + argv[0] + ": " + std::strerror(exec_errno);
    return std::nullopt;
  }
  return ChildProcess(pid, PidfdOpen(pid), std::filesystem::path(argv[0]).filename().string(),
                      stdout_path, stderr_path);
}

ChildProcess::ChildProcess(pid_t pid, int pidfd, std::string name,
                           std::filesystem::path stdout_path, std::filesystem::path stderr_path)
    : pid_(pid),
      pidfd_(pidfd),
      name_(std::move(name)),
      stdout_path_(std::move(stdout_path)),
      stderr_path_(std::move(stderr_path)) {}

ChildProcess::ChildProcess(ChildProcess&& other) noexcept
    : pid_(other.pid_),
      pidfd_(other.pidfd_),
      exit_code_(other.exit_code_),
      name_(std::move(other.name_)),
      stdout_path_(std::move(other.stdout_path_)),
      stderr_path_(std::move(other.stderr_path_)) {
  other.pid_ = -1;
  other.pidfd_ = -1;
}

ChildProcess::~ChildProcess() {
  if (pid_ > 0 && !exit_code_) Stop(std::chrono::seconds(5));
  if (pidfd_ >= 0) close(pidfd_);
}

std::optional<int> ChildProcess::Reap(bool block) {
  if (exit_code_ || pid_ <= 0) return exit_code_;
  int status = 0;
  pid_t r;
  do {
    r = waitpid(pid_, &status, block ? 0 : WNOHANG);
  } while (r < 0 && errno == EINTR);
  if (r == pid_) exit_code_ = DecodeWaitStatus(status);
  return exit_code_;
}

bool ChildProcess::Exited() { return Reap(false).has_value(); }

std::optional<int> ChildProcess::Wait(std::chrono::milliseconds timeout) {
  if (exit_code_) return exit_code_;
  if (pidfd_ >= 0) {
    pollfd fd{pidfd_, POLLIN, 0};
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (true) {
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          deadline - std::chrono::steady_clock::now());
      const int r = poll(&fd, 1, static_cast<int>(std::max<int64_t>(left.count(), 0)));
      if (r > 0) return Reap(true);
      if (r == 0) return Reap(false);
      if (errno != EINTR) break;
    }
  }
  // No pidfd (old kernel): a bounded wait in short steps.
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!Reap(false) && std::chrono::steady_clock::now() < deadline) {
    usleep(10'000);
  }
  return exit_code_;
}

int ChildProcess::Stop(std::chrono::milliseconds grace) {
  if (pid_ <= 0) return -1;
  if (!Exited()) {
    kill(pid_, SIGTERM);
    if (!Wait(grace)) {
      kill(pid_, SIGKILL);
      Reap(true);
    }
  }
  return exit_code_.value_or(-1);
}

std::string ReadFile(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

CommandResult RunCommand(const std::vector<std::string>& argv, const std::filesystem::path& dir,
                         const std::string& label, std::chrono::milliseconds timeout) {
  CommandResult result;
  const std::filesystem::path out = dir / (label + ".out");
  const std::filesystem::path err = dir / (label + ".err");
  std::filesystem::remove(out);
  std::filesystem::remove(err);
  std::string error;
  std::optional<ChildProcess> child = ChildProcess::Start(argv, out, err, &error);
  if (!child) {
    result.err = error;
    return result;
  }
  std::optional<int> code = child->Wait(timeout);
  if (!code) child->Stop(std::chrono::seconds(2));
  result.exit_code = code.value_or(-1);
  result.out = ReadFile(out);
  result.err = ReadFile(err);
  return result;
}

}  // namespace bitsweep::e2e
