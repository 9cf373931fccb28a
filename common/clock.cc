#include "common/clock.h"

namespace bitsweep::common {

int64_t SystemClock::NowUnixMs() const {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

SystemClock* SystemClock::Get() {
  static SystemClock clock;
  return &clock;
}

int64_t FakeClock::NowUnixMs() const {
  std::lock_guard<std::mutex> lock(mu_);
  return now_;
}

void FakeClock::AdvanceMs(int64_t ms) {
  std::lock_guard<std::mutex> lock(mu_);
  now_ += ms;
}

void FakeClock::SetUnixMs(int64_t unix_ms) {
  std::lock_guard<std::mutex> lock(mu_);
  now_ = unix_ms;
}

}  // namespace bitsweep::common
