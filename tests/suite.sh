#!/usr/bin/env bash
# `make test`: every test, in two streams at once on one machine.
#
# The `alone` tests need the CPU when they ask: they assert a latency SLO on real traffic (a
# pipeline's p99 against 100 ms), or start Ray nodes that give up when their GCS does not
# answer within ~30 s (the two-node cluster). They run at normal priority, their Ray workers too
# (RAY_worker_niceness=0; Ray starts its workers at nice 15 by default, which let any other
# load starve a Serve replica). All the other tests run beside them under `nice -n 19`, in two
# pytest-xdist workers (whole files to a worker, each with its own Ray session and Serve port,
# see tests/conftest.py): they get the CPU the alone tests leave idle (a pipeline keeps 2 cores
# ~54% busy) and all of it once those end. The alone tests' output follows the others'.
set -u
python=$1
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT

RAY_worker_niceness=0 KEEL_TEST_SERVE_PORT=8030 "$python" -m pytest -m alone \
    -p no:cacheprovider --basetemp="$scratch/tmp" tests >"$scratch/alone.log" 2>&1 &
alone=$!
nice -n 19 "$python" -m pytest -n 2 --dist loadfile -m "not alone" tests
rest=$?
wait "$alone"
status=$?
echo "---------------- the alone tests (normal priority, run beside the others) ----------------"
cat "$scratch/alone.log"
[ "$rest" -eq 0 ] && [ "$status" -eq 0 ]
