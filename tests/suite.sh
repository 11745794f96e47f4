#!/usr/bin/env bash
# `make test`: every test, in two phases.
#
# First all but the `alone` tests, in two pytest-xdist workers (whole files to a worker, each
# with its own Ray session and Serve port, the longest files first: see tests/conftest.py).
# Then the `alone` tests, one at a time with nothing beside them: they assert a latency SLO on
# real traffic (a pipeline's p99 against 100 ms), which a neighbour on the two cores would
# decide instead of keel.
#
# Running both phases at once, the others under `nice -n 19`, took 16-18 min instead of ~20,
# but starved the nice side: a cluster node's `ray start` and a metrics scrape timed out in two
# runs of four. The two-node cluster test runs in the first phase at normal priority, where it
# has passed. The second phase runs even when the first fails; the exit status is 1 if either
# failed.
set -u
python=$1
"$python" -m pytest -n 2 --dist loadfile --no-loadscope-reorder -m "not alone" --durations=30 tests
rest=$?
# Only the files that hold `alone` tests are collected: collecting every file imports the
# whole suite's modules (~8 s) to select one test.
mapfile -t files < <(grep -rlE "mark\.alone\b" tests --include="test_*.py")
alone=0
if [ "${#files[@]}" -gt 0 ]; then
  "$python" -m pytest -m alone --durations=10 "${files[@]}"
  alone=$?
fi
[ "$rest" -eq 0 ] && [ "$alone" -eq 0 ]
