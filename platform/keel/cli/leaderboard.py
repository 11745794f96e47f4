"""Try every model family on one dataset under a time budget; register the best as a candidate."""

from keel import runtime, tracking
from keel.app import Summary, main
from keel.config import KeelConfig, to_dict
from keel.training.leaderboard import leaderboard
from keel.training.run import describe

GROUPS = (
    "leaderboard dataset features model train slo tracking paths ray"  # the config groups it reads
)


def leaderboard_job(cfg: KeelConfig) -> Summary:
    runtime.ensure(cfg)
    board = leaderboard(cfg)
    t = board.registered
    run_dir = tracking.log_training(
        cfg, to_dict(cfg), t.history, t.metrics, t.version.version, t.promoted
    )
    primary = board.entries[0].primary
    s = Summary(
        f"leaderboard of {cfg.dataset.name}: {len(board.entries)} model(s) within "
        f"{cfg.leaderboard.budget}, best validation loss first"
    )
    s.add(
        "  model (family)",
        f"{'val_loss':>9} {'test ' + primary:>13} {'baseline':>9} {'train s':>8} "
        f"{'ms @1':>6} {'ms @32':>7} {'size':>9}",
    )
    for e in board.entries:
        s.add(
            f"  {e.model} ({e.family.value})",
            f"{e.val_loss:>9.4f} {e.test[primary]:>13.4f} {e.baseline[primary]:>9.4f} "
            f"{e.train_seconds:>8.1f} {e.ms_per_batch['1']:>6.2f} {e.ms_per_batch['32']:>7.2f} "
            f"{_size(e.size_bytes):>9}",
        )
    if board.missing:
        s.add("no trial finished", ", ".join(board.missing) + " (raise leaderboard.budget)")
    s.add("results", board.results_path)
    s.rows += [(f"registered: {k}", v) for k, v in describe(t)]
    s.rows += tracking.described(run_dir)
    return s


def _size(n: int) -> str:
    return f"{n / 1e6:.1f} MB" if n >= 1e6 else f"{n / 1e3:.1f} kB"


def command() -> None:
    """The job with this process's command line (sys.argv[1:] are its arguments)."""
    main(leaderboard_job)


if __name__ == "__main__":
    command()
