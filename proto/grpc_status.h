// The one mapping between absl::Status and grpc::Status (both directions).
#pragma once

#include <grpcpp/support/status.h>

#include "absl/status/status.h"

namespace hipserve::proto {

grpc::Status ToGrpcStatus(const absl::Status& status);
absl::Status FromGrpcStatus(const grpc::Status& status);

}  // namespace hipserve::proto
