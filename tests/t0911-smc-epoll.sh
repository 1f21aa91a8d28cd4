#!/bin/bash
# Shared-memory sockets under raw epoll(7), step by step in lock-step
# with the peer: edge-triggered EPOLLIN reported once per arrival,
# level-triggered again and again, EPOLLONESHOT re-armed only by
# EPOLL_CTL_MOD, edge-triggered EPOLLOUT after a full buffer is drained,
# EPOLLRDHUP and EOF after the peer's shutdown, a pipe in the same set.
# The script passes over plain TCP too (the kernel's semantics).
# shellcheck source=lib/common.sh
. "$(dirname "$0")/lib/common.sh"
# shellcheck source=lib/smc
. "$ROOT/tests/lib/smc"

smc_pair "$ROOT/tests/lib/smc-epoll"
echo "t0911: epoll edge and level triggered, one-shot, EPOLLOUT, EPOLLRDHUP over shared memory"
