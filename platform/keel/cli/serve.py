"""Serve the models of serve.models over HTTP with Ray Serve until interrupted (Ctrl-C)."""

import signal
import threading

from keel import prediction_log
from keel.app import Summary, main
from keel.config import KeelConfig
from keel.serving import service

GROUPS = "serve slo paths ray"  # the config groups it reads


def serve_job(cfg: KeelConfig) -> Summary:
    try:
        base = service.start(cfg)
    except KeyboardInterrupt:  # interrupted while deploying: leave nothing half-deployed
        service.stop(cfg)
        raise
    started = Summary(f"serving {cfg.serve.app_name} at {base} (Ctrl-C to stop)")
    for model, served in cfg.serve.models.items():
        started.add(model, f"POST {base}/v1/models/{model}:predict  ({served.version})")
    started.add("API docs", f"{base}/docs")
    started.add("prediction log", prediction_log.predictions_dir(cfg.paths.logs, "<model>"))
    started.show()
    stopped = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stopped.set())
    stopped.wait()
    service.stop(cfg)
    return Summary("stopped: logs flushed").add("logs", cfg.paths.logs)


def command() -> None:
    """The job with this process's command line (sys.argv[1:] are its arguments)."""
    main(serve_job)


if __name__ == "__main__":
    command()
