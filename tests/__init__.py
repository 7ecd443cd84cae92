"""The test suite and the benchmarks (``python -m tests.bench.*``)."""

import os

# gRPC's fork support restarts its poller thread in a forked child. A subprocess forked only to
# exec, with a preexec_fn as the process helpers use (tests.support), can then crash before
# its exec with "epoll_wait error: Bad file descriptor" (grpc/grpc#43055): an operator that never
# started, in one run of the suite. Nothing here uses gRPC across a fork, so fork support is off
# for the tests, the benchmarks and every process they start (which inherit the setting). Set
# here, in the package every test and benchmark module is imported under, before gRPC loads.
os.environ["GRPC_ENABLE_FORK_SUPPORT"] = "false"
