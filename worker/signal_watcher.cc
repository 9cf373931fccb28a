#include "worker/signal_watcher.h"

#include <signal.h>

#include <utility>

namespace bitsweep::worker {
namespace {

// SIGUSR2 only wakes the watcher for a clean exit when no real signal came.
sigset_t WatchedSignals() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGUSR2);
  return set;
}

}  // namespace

SignalWatcher::SignalWatcher(std::function<void(int)> on_signal)
    : on_signal_(std::move(on_signal)) {
  sigset_t set = WatchedSignals();
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  thread_ = std::thread([this] {
    sigset_t watched = WatchedSignals();
    int signal_number = 0;
    while (sigwait(&watched, &signal_number) == 0 && signal_number != SIGUSR2) {
      on_signal_(signal_number);
    }
  });
}

SignalWatcher::~SignalWatcher() {
  pthread_kill(thread_.native_handle(), SIGUSR2);
  thread_.join();
}

}  // namespace bitsweep::worker
