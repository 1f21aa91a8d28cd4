#!/bin/bash
# Shared-memory sockets through several descriptor numbers: select(2)
# for reading and writing, FIONREAD as bytes arrive and after a partial
# read, dup and a read after the first number is closed, dup2,
# F_DUPFD_CLOEXEC, sendmsg/recvmsg with several buffers, SO_ERROR; the
# peer sees EOF only when the last number is closed, and both ends
# stay in shared memory. The script passes over plain TCP too.
# shellcheck source=lib/common.sh
. "$(dirname "$0")/lib/common.sh"
# shellcheck source=lib/smc
. "$ROOT/tests/lib/smc"

smc_pair "$ROOT/tests/lib/smc-dup"
echo "t0914: select, FIONREAD, dup, dup2, F_DUPFD_CLOEXEC, sendmsg/recvmsg over shared memory"
