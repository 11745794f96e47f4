"""keel.runtime owns ray.init: a process can stop Ray and start an embedded one again."""

import subprocess
import sys
import textwrap

RESTART = textwrap.dedent("""
    import ray
    from keel import runtime
    from keel.config import load
    cfg = load(["ray.num_cpus=1", "ray.progress_bars=false"])
    runtime.ensure(cfg)
    first = ray.get_runtime_context().gcs_address
    ray.shutdown()
    runtime.ensure(cfg)  # RAY_ADDRESS exported by the first start must not be rejoined
    print("second cluster:", ray.get_runtime_context().gcs_address != first)
""")


def test_an_embedded_ray_can_be_started_again_in_the_same_process():
    # A subprocess: the shared test session's Ray must keep running.
    proc = subprocess.run(
        [sys.executable, "-c", RESTART], capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "second cluster: True" in proc.stdout
