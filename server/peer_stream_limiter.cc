#include "server/peer_stream_limiter.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"

namespace bitsweep::server {

PeerStreamLimiter::Slot::~Slot() {
  if (limiter_ != nullptr) limiter_->Release(host_);
}

void PeerStreamLimiter::set_max_per_peer(int max_per_peer) {
  std::lock_guard<std::mutex> lock(mu_);
  max_per_peer_ = std::max(1, max_per_peer);
}

absl::StatusOr<PeerStreamLimiter::Slot> PeerStreamLimiter::Acquire(absl::string_view grpc_peer) {
  std::string host = PeerHost(grpc_peer);
  std::lock_guard<std::mutex> lock(mu_);
  int& open = open_[host];
  if (open >= max_per_peer_) {
    if (open == 0) open_.erase(host);
    return absl::ResourceExhaustedError(absl::StrCat(host, " already has ", max_per_peer_, " open ",
                                                     what_,
                                                     " (the limit); close some before opening "
                                                     "another"));
  }
  ++open;
  return Slot(this, std::move(host));
}

int PeerStreamLimiter::OpenFor(absl::string_view grpc_peer) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = open_.find(PeerHost(grpc_peer));
  return it == open_.end() ? 0 : it->second;
}

std::string PeerStreamLimiter::PeerHost(absl::string_view grpc_peer) {
  absl::string_view rest = grpc_peer;
  if (absl::ConsumePrefix(&rest, "ipv4:")) {
    return std::string(rest.substr(0, rest.rfind(':')));
  }
  if (absl::ConsumePrefix(&rest, "ipv6:")) {
    // gRPC writes the brackets URI-escaped ("ipv6:%5B::1%5D:50051") in recent versions.
    if (absl::ConsumePrefix(&rest, "[")) return std::string(rest.substr(0, rest.find(']')));
    if (absl::ConsumePrefix(&rest, "%5B")) return std::string(rest.substr(0, rest.find("%5D")));
    return std::string(rest.substr(0, rest.rfind(':')));
  }
  return std::string(grpc_peer);
}

void PeerStreamLimiter::Release(const std::string& host) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = open_.find(host);
  if (it != open_.end() && --it->second <= 0) open_.erase(it);
}

}  // namespace bitsweep::server
