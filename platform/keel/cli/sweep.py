"""Ray Tune sweep over the sweep config's search space; registers the best trial's config."""

from keel import runtime, tracking
from keel.app import Summary, main
from keel.config import KeelConfig
from keel.training.run import describe
from keel.training.sweep import sweep

GROUPS = "sweep dataset features model train slo tracking paths ray"  # the config groups it reads


def sweep_job(cfg: KeelConfig) -> Summary:
    runtime.ensure(cfg)
    result = sweep(cfg)
    t = result.trained
    run_dir = tracking.log_trained(cfg, t)
    s = Summary(f"sweep of {cfg.dataset.name}: {len(result.table)} trials")
    for _, row in result.table.head(10).iterrows():
        params = ", ".join(f"{k}={row[k]:.4g}" for k in cfg.sweep.space if k in row)
        s.add(f"  {row['trial_id']}", f"{cfg.sweep.metric}={row[cfg.sweep.metric]:.4f}  {params}")
    s.add("best", ", ".join(f"{k}={v:.4g}" for k, v in result.best_params.items()))
    s.add("results", result.results_path)
    s.rows += [(f"registered: {k}", v) for k, v in describe(t)]
    s.rows += tracking.described(run_dir)
    return s


def command() -> None:
    """The job with this process's command line (sys.argv[1:] are its arguments)."""
    main(sweep_job)


if __name__ == "__main__":
    command()
