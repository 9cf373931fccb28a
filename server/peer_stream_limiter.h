// PeerStreamLimiter: caps the long-lived calls (WatchSweep streams) that one peer host may hold
// open at once. Each open stream holds a server thread, so without a cap one client could tie
// up every thread and starve the workers' calls (docs/security.md, "Limits and bad input").
// Peers are counted by host, not by connection: a client opening many channels is still one.
//
// Thread-safe (one mutex).
#pragma once

#include <map>
#include <mutex>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace bitsweep::server {

class PeerStreamLimiter {
 public:
  static constexpr int kDefaultMaxPerPeer = 64;

  // Releases its stream when destroyed. Move-only.
  class Slot {
   public:
    Slot(Slot&& other) noexcept : limiter_(other.limiter_), host_(std::move(other.host_)) {
      other.limiter_ = nullptr;
    }
    Slot& operator=(Slot&&) = delete;
    Slot(const Slot&) = delete;
    Slot& operator=(const Slot&) = delete;
    ~Slot();

   private:
    friend class PeerStreamLimiter;
    Slot(PeerStreamLimiter* limiter, std::string host)
        : limiter_(limiter), host_(std::move(host)) {}
    PeerStreamLimiter* limiter_;
    std::string host_;
  };

  // `what` names the streams in errors, e.g. "WatchSweep streams".
  PeerStreamLimiter(std::string what, int max_per_peer = kDefaultMaxPerPeer)
      : what_(std::move(what)), max_per_peer_(max_per_peer) {}
  PeerStreamLimiter(const PeerStreamLimiter&) = delete;
  PeerStreamLimiter& operator=(const PeerStreamLimiter&) = delete;

  // Set before serving. A limit below 1 means 1.
  void set_max_per_peer(int max_per_peer);

  // A stream for `grpc_peer` (grpc::ServerContext::peer(), e.g. "ipv4:10.0.0.5:41234").
  // Errors: ResourceExhausted "10.0.0.5 already has 64 open WatchSweep streams (the limit);
  // close some before opening another".
  absl::StatusOr<Slot> Acquire(absl::string_view grpc_peer);

  // Streams open for the host of `grpc_peer`.
  int OpenFor(absl::string_view grpc_peer) const;

  // The host part of a gRPC peer string: "ipv4:1.2.3.4:5678" -> "1.2.3.4",
  // "ipv6:[::1]:5678" and "ipv6:%5B::1%5D:5678" -> "::1"; anything else (unix sockets, in-process)
  // as it is.
  static std::string PeerHost(absl::string_view grpc_peer);

 private:
  void Release(const std::string& host);

  const std::string what_;
  mutable std::mutex mu_;
  int max_per_peer_;                 // Guarded by mu_.
  std::map<std::string, int> open_;  // Guarded by mu_. Hosts with at least one stream.
};

}  // namespace bitsweep::server
