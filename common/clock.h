// Time comes through a Clock so that lease and heartbeat logic can be tested with a FakeClock
// instead of sleeping.
#pragma once

#include <chrono>
#include <cstdint>
#include <mutex>

namespace bitsweep::common {

class Clock {
 public:
  virtual ~Clock() = default;
  // Milliseconds since the Unix epoch.
  virtual int64_t NowUnixMs() const = 0;
};

class SystemClock final : public Clock {
 public:
  int64_t NowUnixMs() const override;
  // A process-wide instance.
  static SystemClock* Get();
};

// A clock that only moves when told to. Thread-safe.
class FakeClock final : public Clock {
 public:
  explicit FakeClock(int64_t start_unix_ms = 1'700'000'000'000) : now_(start_unix_ms) {}
  int64_t NowUnixMs() const override;
  void AdvanceMs(int64_t ms);
  void SetUnixMs(int64_t unix_ms);

 private:
  mutable std::mutex mu_;
  int64_t now_;
};

}  // namespace bitsweep::common
