#include "common/grpc_status.h"

#include <gtest/gtest.h>

namespace bitsweep::common {
namespace {

TEST(GrpcStatusTest, OkMapsToOkBothWays) {
  EXPECT_TRUE(ToGrpcStatus(absl::OkStatus()).ok());
  EXPECT_TRUE(FromGrpcStatus(grpc::Status::OK).ok());
}

TEST(GrpcStatusTest, CodeAndMessageSurviveTheRoundTrip) {
  const absl::Status cases[] = {
      absl::InvalidArgumentError("sweep.parameters.train.batch_size: must be > 0"),
      absl::NotFoundError("no sweep 7"),
      absl::FailedPreconditionError("stale attempt"),
      absl::UnavailableError("server down"),
      absl::UnauthenticatedError("no token"),
      absl::PermissionDeniedError("worker token cannot submit"),
      absl::ResourceExhaustedError("too many trials"),
      absl::CancelledError("cancelled"),
  };
  for (const absl::Status& status : cases) {
    grpc::Status wire = ToGrpcStatus(status);
    EXPECT_EQ(static_cast<int>(wire.error_code()), static_cast<int>(status.code()));
    EXPECT_EQ(wire.error_message(), status.message());
    EXPECT_EQ(FromGrpcStatus(wire), status);
  }
}

TEST(GrpcStatusTest, GrpcCodesMapToTheSameAbslCodes) {
  EXPECT_EQ(FromGrpcStatus(grpc::Status(grpc::StatusCode::DEADLINE_EXCEEDED, "slow")).code(),
            absl::StatusCode::kDeadlineExceeded);
  EXPECT_EQ(FromGrpcStatus(grpc::Status(grpc::StatusCode::UNAVAILABLE, "down")).code(),
            absl::StatusCode::kUnavailable);
}

}  // namespace
}  // namespace bitsweep::common
