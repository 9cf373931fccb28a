#!/usr/bin/python3
"""A second-language client: Python stubs generated from proto/ drive a real bitsweep-server.

Proves the gRPC API is usable without our C++ client: generates the stubs with Debian's
python3-grpc-tools into a temporary directory, starts bitsweep-server (loopback, port 0) and one
bitsweep-worker, submits a small synthetic sweep, follows it with WatchSweep and reads the
results and a curve. Every child process is stopped and reaped, whatever happens.

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


def generate_stubs(proto_dir, out_dir):
    os.makedirs(out_dir)
    protos = [os.path.join(proto_dir, "bitsweep", "v1", name)
              for name in ("config.proto", "worker.proto", "sweep.proto")]
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
