// SIGINT/SIGTERM handling without signal handlers: the signals are blocked in every thread and
// a dedicated thread receives them with sigwait(), so the reaction may lock, log and notify.
#pragma once

#include <pthread.h>

#include <functional>
#include <thread>

namespace bitsweep::worker {

class SignalWatcher {
 public:
  // Blocks SIGINT and SIGTERM in the calling thread, so construct it in main() before any other
  // thread starts (threads inherit the mask). `on_signal` runs on the watcher's thread with the
  // signal number, once per signal received (a second Ctrl-C may mean "now").
  explicit SignalWatcher(std::function<void(int)> on_signal);
  // Stops the watcher thread if no signal came.
  ~SignalWatcher();
  SignalWatcher(const SignalWatcher&) = delete;
  SignalWatcher& operator=(const SignalWatcher&) = delete;

 private:
  std::function<void(int)> on_signal_;
  std::thread thread_;
};

}  // namespace bitsweep::worker
