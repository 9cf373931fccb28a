# Precompiled headers (BITSWEEP_PCH): third-party and generated headers only, never our own, so
# that every warning in our code is still reported where it is.
#
# A precompiled header is only valid for compiles with the same flags and definitions as the one
# that made it, so each set below is precompiled once, in one "anchor" target, and reused by the
# targets whose compile commands are identical (bitsweep_reuse_precompiled_headers). CMake adds
# GCC's -Winvalid-pch: a reuse whose flags do not match warns, and fails with BITSWEEP_WERROR.
# The trainer library is not listed: it gets no gRPC headers.

set(BITSWEEP_PCH_STD <algorithm> <array> <chrono> <cmath> <cstdint> <filesystem> <fstream>
    <functional> <map> <memory> <mutex> <optional> <sstream> <string> <string_view> <thread>
    <utility> <vector>)
set(BITSWEEP_PCH_ABSL <absl/status/status.h> <absl/status/statusor.h> <absl/strings/str_cat.h>
    <absl/strings/str_format.h> <absl/synchronization/mutex.h> <absl/time/time.h>)
set(BITSWEEP_PCH_PROTO <bitsweep/v1/config.pb.h> <bitsweep/v1/sweep.pb.h> <bitsweep/v1/worker.pb.h>)
set(BITSWEEP_PCH_GTEST <gtest/gtest.h> <gmock/gmock.h>)

# kind -> headers.
#   grpc: the worker and the CLI (libraries and mains).
#   server: the server library and main.
#   trainer_test: the trainer's and the worker's tests.
set(BITSWEEP_PCH_GRPC ${BITSWEEP_PCH_STD} ${BITSWEEP_PCH_ABSL} ${BITSWEEP_PCH_PROTO}
    <bitsweep/v1/config.grpc.pb.h> <bitsweep/v1/sweep.grpc.pb.h> <bitsweep/v1/worker.grpc.pb.h>
    <grpcpp/grpcpp.h> <google/protobuf/util/json_util.h> <nlohmann/json.hpp> <spdlog/spdlog.h>)
# Not CLI11: its header defines namespace-scope validator objects, which every compile that
# includes it constructs (about 160 functions more in each object file).
set(BITSWEEP_PCH_HEADERS_grpc ${BITSWEEP_PCH_GRPC})
set(BITSWEEP_PCH_HEADERS_server ${BITSWEEP_PCH_GRPC} <SQLiteCpp/SQLiteCpp.h> <httplib.h>)
set(BITSWEEP_PCH_HEADERS_grpc_test ${BITSWEEP_PCH_HEADERS_grpc} ${BITSWEEP_PCH_GTEST})
set(BITSWEEP_PCH_HEADERS_server_test ${BITSWEEP_PCH_HEADERS_server} ${BITSWEEP_PCH_GTEST})
set(BITSWEEP_PCH_HEADERS_trainer_test ${BITSWEEP_PCH_STD} ${BITSWEEP_PCH_ABSL}
    <bitsweep/v1/config.pb.h> <Eigen/Core> ${BITSWEEP_PCH_GTEST})

# bitsweep_precompile_headers(TARGET KIND): TARGET precompiles the headers of KIND.
function(bitsweep_precompile_headers target kind)
  if(BITSWEEP_PCH)
    target_precompile_headers(${target} PRIVATE ${BITSWEEP_PCH_HEADERS_${kind}})
  endif()
endfunction()

# bitsweep_reuse_precompiled_headers(ANCHOR TARGET...): each TARGET uses ANCHOR's.
function(bitsweep_reuse_precompiled_headers anchor)
  if(BITSWEEP_PCH)
    foreach(target ${ARGN})
      target_precompile_headers(${target} REUSE_FROM ${anchor})
    endforeach()
  endif()
endfunction()
