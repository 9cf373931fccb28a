#!/usr/bin/python3
"""A second-language client: Python stubs generated from proto/ drive a real bitsweep-server.

Proves the gRPC API is usable without our C++ client: generates the stubs with Debian's
python3-grpc-tools into a temporary directory, starts bitsweep-server (loopback, port 0) and one
bitsweep-worker, checks the standard gRPC health service (grpc.health.v1.Health/Check) and
server reflection (list the services, fetch SweepService's descriptor) as grpcurl or a load
balancer would, submits a small synthetic sweep, follows it with WatchSweep and reads the
results and a curve. Every child process is stopped and reaped, whatever happens.

Debian's python3-grpcio ships neither grpc_health nor grpc_reflection, so the two standard
service definitions are written out below (field numbers as in grpc/grpc's
src/proto/grpc/health/v1/health.proto and reflection/v1alpha/reflection.proto) and compiled
like ours.

Usage: python_client_test.py PROTO_DIR SERVER_BIN WORKER_BIN
"""
import json
import os
import re
import subprocess
import sys
import tempfile
import threading

import grpc
from grpc_tools import protoc

DEADLINE_SECONDS = 90


HEALTH_PROTO = """
syntax = "proto3";
package grpc.health.v1;
message HealthCheckRequest { string service = 1; }
message HealthCheckResponse {
  enum ServingStatus { UNKNOWN = 0; SERVING = 1; NOT_SERVING = 2; SERVICE_UNKNOWN = 3; }
  ServingStatus status = 1;
}
service Health { rpc Check(HealthCheckRequest) returns (HealthCheckResponse); }
"""

# The subset of the reflection protocol used here; PACKAGE is grpc.reflection.v1alpha (what
# gRPC 1.51's C++ server offers) or grpc.reflection.v1 (newer servers), same messages.
REFLECTION_PROTO = """
syntax = "proto3";
package PACKAGE;
message ServerReflectionRequest {
  string host = 1;
  oneof message_request {
    string file_by_filename = 3;
    string file_containing_symbol = 4;
    string list_services = 7;
  }
}
message ServerReflectionResponse {
  string valid_host = 1;
  ServerReflectionRequest original_request = 2;
  oneof message_response {
    FileDescriptorResponse file_descriptor_response = 4;
    ListServiceResponse list_services_response = 6;
    ErrorResponse error_response = 7;
  }
}
message FileDescriptorResponse { repeated bytes file_descriptor_proto = 1; }
message ListServiceResponse { repeated ServiceResponse service = 1; }
message ServiceResponse { string name = 1; }
message ErrorResponse { int32 error_code = 1; string error_message = 2; }
service ServerReflection {
  rpc ServerReflectionInfo(stream ServerReflectionRequest)
      returns (stream ServerReflectionResponse);
}
"""

REFLECTION_PACKAGES = ("v1alpha", "v1")


def generate_stubs(proto_dir, out_dir):
    os.makedirs(out_dir)
    protos = [os.path.join(proto_dir, "bitsweep", "v1", name)
              for name in ("config.proto", "worker.proto", "sweep.proto")]
    standard_dir = os.path.join(out_dir, "standard")
    # Under "standard_grpc/": a generated "grpc" package would hide grpcio's own. The proto
    # packages (what goes on the wire) are the standard ones.
    standard = {os.path.join("standard_grpc", "health", "v1", "health.proto"): HEALTH_PROTO}
    for version in REFLECTION_PACKAGES:
        standard[os.path.join("standard_grpc", "reflection", version, "reflection.proto")] = (
            REFLECTION_PROTO.replace("PACKAGE", "grpc.reflection." + version))
    for relative, text in standard.items():
        path = os.path.join(standard_dir, relative)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as f:
            f.write(text)
        if protoc.main(["grpc_tools.protoc", "-I" + standard_dir, "--python_out=" + out_dir,
                        "--grpc_python_out=" + out_dir, path]) != 0:
            raise RuntimeError("grpc_tools.protoc failed on " + relative)
    # google/protobuf/struct.proto: from libprotobuf-dev (/usr/include) on Debian.
    args = ["grpc_tools.protoc", "-I" + proto_dir, "-I/usr/include",
            "--python_out=" + out_dir, "--grpc_python_out=" + out_dir] + protos
    if protoc.main(args) != 0:
        raise RuntimeError("grpc_tools.protoc failed")
    sys.path.insert(0, out_dir)


def wait_for_grpc_port(server):
    """Reads the server's JSON log lines (blocking, no polling) until it says where it listens."""
    for line in server.stderr:
        record = json.loads(line)  # --log-format json: every line must parse
        match = re.search(r"gRPC listening on port (\d+)", record["msg"])
        if match:
            return int(match.group(1))
    raise RuntimeError("bitsweep-server exited before listening (exit %s)" % server.wait())


def small_sweep(sweep_pb2):
    spec = sweep_pb2.SweepSpec(name="python client", method="grid", seeds=1)
    spec.base.update({
        "dataset": {"name": "synthetic", "train_limit": 500, "test_limit": 200},
        "model": {"conv": [4], "kernel": 3, "pool": 2, "dense": [8], "activation": "relu",
                  "init": "he"},
        "train": {"iterations": 60, "batch_size": 16, "optimizer": "sgd", "lr": 0.05,
                  "eval_every": 20},
        "precision": {"default": {"format": "fp32", "rounding": "nearest"},
                      "sites": ["weights", "activations", "errors"]},
    })
    parameter = spec.parameters.add(path="precision.default.format")
    parameter.values.extend(["fp32", "mask:12"])
    return spec


def check_health_and_reflection(channel):
    """The standard services a load balancer, Kubernetes probe or grpcurl would use."""
    import importlib
    from standard_grpc.health.v1 import health_pb2, health_pb2_grpc

    health = health_pb2_grpc.HealthStub(channel)
    reply = health.Check(health_pb2.HealthCheckRequest(service=""), timeout=10)
    assert reply.status == health_pb2.HealthCheckResponse.SERVING, reply

    for version in REFLECTION_PACKAGES:
        pb2 = importlib.import_module("standard_grpc.reflection.%s.reflection_pb2" % version)
        pb2_grpc = importlib.import_module(
            "standard_grpc.reflection.%s.reflection_pb2_grpc" % version)
        stub = pb2_grpc.ServerReflectionStub(channel)
        requests = [pb2.ServerReflectionRequest(list_services=""),
                    pb2.ServerReflectionRequest(file_containing_symbol="bitsweep.v1.SweepService")]
        try:
            replies = list(stub.ServerReflectionInfo(iter(requests), timeout=10))
        except grpc.RpcError as error:
            if error.code() == grpc.StatusCode.UNIMPLEMENTED:
                continue  # This server speaks the other version.
            raise
        assert len(replies) == 2, replies
        services = sorted(s.name for s in replies[0].list_services_response.service)
        for expected in ("bitsweep.v1.SweepService", "bitsweep.v1.WorkerService",
                         "grpc.health.v1.Health"):
            assert expected in services, services
        files = replies[1].file_descriptor_response.file_descriptor_proto
        assert files, replies[1]
        # The descriptors are enough to call the API with no .proto at hand (what grpcurl does).
        from google.protobuf import descriptor_pb2
        names = []
        for blob in files:
            descriptor = descriptor_pb2.FileDescriptorProto()
            descriptor.ParseFromString(blob)
            names.append(descriptor.name)
        assert "bitsweep/v1/sweep.proto" in names, names
        print("python client: health SERVING; reflection (%s) lists %s" % (version, services))
        return
    raise AssertionError("the server offers no reflection service (v1alpha or v1)")


def stop(process):
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def main():
    proto_dir, server_bin, worker_bin = sys.argv[1:4]
    with tempfile.TemporaryDirectory(prefix="bitsweep-python-") as temp:
        generate_stubs(proto_dir, os.path.join(temp, "stubs"))
        from bitsweep.v1 import sweep_pb2, sweep_pb2_grpc

        server = subprocess.Popen(
            [server_bin, "--listen", "127.0.0.1:0", "--http", "127.0.0.1:0",
             "--db", os.path.join(temp, "db", "bitsweep.db"), "--log-format", "json"],
            stderr=subprocess.PIPE, text=True)
        worker = None
        try:
            port = wait_for_grpc_port(server)
            # The server keeps logging: drain its pipe so that it never blocks on a full one.
            # Every line must still be JSON.
            threading.Thread(target=lambda: [json.loads(line) for line in server.stderr],
                             daemon=True).start()
            address = "127.0.0.1:%d" % port
            worker = subprocess.Popen(
                [worker_bin, "--server", address, "--slots", "1", "--data-dir", temp,
                 "--log-level", "warn"])

            channel = grpc.insecure_channel(address)
            check_health_and_reflection(channel)
            stub = sweep_pb2_grpc.SweepServiceStub(channel)
            submitted = stub.SubmitSweep(sweep_pb2.SubmitSweepRequest(spec=small_sweep(sweep_pb2)),
                                         timeout=10)
            assert submitted.trial_count == 2, submitted
            sweep_id = submitted.sweep_id

            final = None
            for event in stub.WatchSweep(sweep_pb2.WatchSweepRequest(sweep_id=sweep_id),
                                         timeout=DEADLINE_SECONDS):
                final = event.sweep
            assert final is not None and final.state == sweep_pb2.SWEEP_STATE_DONE, final
            assert final.counts.done == 2, final.counts

            trials = stub.ListTrials(sweep_pb2.ListTrialsRequest(sweep_id=sweep_id),
                                     timeout=10).trials
            formats = sorted(p.value for t in trials for p in t.params)
            assert formats == ["fp32", "mask:12"], formats
            for trial in trials:
                assert trial.state == sweep_pb2.TRIAL_STATE_DONE, trial
                assert 0.0 <= trial.result.final_test_accuracy <= 1.0, trial.result
            detail = stub.GetTrial(sweep_pb2.GetTrialRequest(trial_id=trials[0].id,
                                                             include_curve=True), timeout=10)
            assert [p.iteration for p in detail.curve][-1] == 60, list(detail.curve)
            channel.close()
            print("python client: sweep %d done, final accuracies %s" %
                  (sweep_id, [round(t.result.final_test_accuracy, 3) for t in trials]))
        finally:
            if worker is not None:
                stop(worker)
            stop(server)
    return 0


if __name__ == "__main__":
    sys.exit(main())
