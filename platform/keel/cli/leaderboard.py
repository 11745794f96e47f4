"""Try every model family on one dataset under a time budget; register the best as a candidate."""

from keel import runtime, tracking
from keel.app import Summary, command_line, main
from keel.config import KeelConfig
from keel.training.leaderboard import leaderboard
from keel.training.run import describe

GROUPS = "leaderboard sweep dataset features model train slo tracking paths ray"  # groups it reads


def leaderboard_job(cfg: KeelConfig) -> Summary:
    runtime.ensure(cfg)
    board = leaderboard(cfg)
    t = board.registered
    run_dir = tracking.log_trained(cfg, t)
    primary = board.entries[0].primary
    s = Summary(
        f"leaderboard of {cfg.dataset.name}: {len(board.entries)} model(s) within "
        f"{cfg.leaderboard.budget}, best validation loss first"
    )
    s.add(
        "  model (family)",
        f"{'val_loss':>9} {'test ' + primary:>13} {'baseline':>9} {'train s':>8} "
        f"{'p99 ms @1':>10} {'@32':>6} {'size':>9}",
    )
    for e in board.entries:
        p99 = e.latency["p99_ms_per_batch"]
        s.add(
            f"  {e.model} ({e.family.value})",
            f"{e.val_loss:>9.4f} {e.test[primary]:>13.4f} {e.baseline[primary]:>9.4f} "
            f"{e.train_seconds:>8.1f} {p99['1']:>10.2f} {p99['32']:>6.2f} "
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


# `keel leaderboard families=[mlp,xgboost] budget=30m`: short words for the keys they stand for
SHORT = {"families": "leaderboard.models", "budget": "leaderboard.budget"}
WORDS = "[families=[MODEL,...]] [budget=10m] [key=value ...]"


def expand(arg: str) -> str:
    """A short word's override as the key it stands for; any other argument as it is."""
    key, eq, value = arg.partition("=")
    return f"{SHORT[key]}={value}" if eq and key in SHORT else arg


def command() -> None:
    """The job with this process's command line (sys.argv[1:] are its arguments)."""
    _, args = command_line(__name__)
    main(leaderboard_job, [expand(a) for a in args])


if __name__ == "__main__":
    command()
