// The one place where absl::Status and grpc::Status meet: the transport edge.
#pragma once

#include <grpcpp/support/status.h>

#include "absl/status/status.h"

namespace bitsweep::common {

grpc::Status ToGrpcStatus(const absl::Status& status);
absl::Status FromGrpcStatus(const grpc::Status& status);

}  // namespace bitsweep::common
