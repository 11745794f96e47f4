"""List, show, promote and roll back registered model versions.

Each action takes config overrides besides its words (`keel registry show churn 3
paths.root=s3://bucket/keel`). The registry is cfg.paths.registry; promote checks
cfg.slo.quality_floor, so pass the overrides that pick the model's floor (experiment=listings,
or +slo.quality_floor.roc_auc=0.75).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from rich.markup import escape

from keel.app import Action, Flag, Summary, command_line, main, words_and_overrides
from keel.config import KeelConfig
from keel.registry import ModelVersion, Registry, RegistryError, Stored, main_metric

GROUPS = "slo dataset paths"  # the config groups it reads

DEFAULT_STAGE = "production"
STAGE = Flag(str, f"the stage to move (default {DEFAULT_STAGE})", "STAGE")
REASON = Flag(str, "recorded in the stage history", "TEXT")
ACTIONS = {
    "list": Action("every model: versions, stages, headline test metric"),
    "show": Action(
        "one version: manifest, metrics, lineage, model card (default: production, else latest)",
        "MODEL [VERSION|STAGE]",
    ),
    "promote": Action(
        "move a stage to a version: a number, latest, or a stage (checks the SLO floor)",
        "MODEL VERSION",
        {
            "--stage": STAGE,
            "--force": Flag(bool, "promote below the SLO floor"),
            "--reason": REASON,
        },
    ),
    "rollback": Action(
        "give a stage back to its previous version",
        "MODEL",
        {"--stage": STAGE, "--reason": REASON},
    ),
}


@dataclass(frozen=True)
class Request:
    """An action and its arguments, as checked against ACTIONS (keel.app.command_line)."""

    command: str
    model: str = ""
    ref: str | None = None  # show's VERSION|STAGE, promote's VERSION
    stage: str = DEFAULT_STAGE
    force: bool = False
    reason: str = ""


def parse(argv: Sequence[str] | None = None) -> tuple[Request, list[str]]:
    """The action, its words and flags; key=value arguments, wherever they stand, are config
    overrides (`show churn experiment=x 3`)."""
    flags, rest = command_line(__name__, argv)
    words, overrides = words_and_overrides(rest)
    request = Request(
        command=words[0],
        model=words[1] if len(words) > 1 else "",
        ref=words[2] if len(words) > 2 else None,
        stage=flags.get("--stage", DEFAULT_STAGE),
        force=flags.get("--force", False),
        reason=flags.get("--reason", ""),
    )
    return request, overrides


def run(cfg: KeelConfig, req: Request) -> Summary:
    registry = Registry(cfg.paths.registry)
    if req.command == "list":
        return list_models(registry)
    if req.command == "show":
        return show(registry, req.model, req.ref, dict(cfg.slo.quality_floor))
    if req.command == "promote":
        return promote(registry, req, dict(cfg.slo.quality_floor))
    return rollback(registry, req)


def list_models(registry: Registry) -> Summary:
    summary = Summary(f"model registry {registry.root}")
    models = registry.models()
    if not models:
        return summary.add("models", "none yet (`keel train` registers one)")
    for model in models:
        held = registry.stages(model)
        for mv in registry.versions(model):
            stages = ", ".join(held.of(mv.version))
            line = f"{mv.created_at}  {_headline(registry, mv)}"
            summary.add(f"{model} v{mv.version}", f"{line}  <- {stages}" if stages else line)
    return summary


def show(registry: Registry, model: str, ref: str | None, floor: dict[str, float]) -> Summary:
    if ref is None:
        ref = "production" if registry.stages(model).production is not None else "latest"
    mv = registry.get(model, ref)
    held = registry.stages(model).of(mv.version)
    summary = Summary(f"{mv.label}")
    summary.add("stages", ", ".join(held) or "none (a candidate)")
    summary.add("created", mv.created_at)
    summary.add("parent", f"v{mv.parent}" if mv.parent is not None else "none")
    summary.add("path", mv.path)
    for name, sha in sorted(mv.files.items()):
        summary.add(f"file {name}", f"sha256 {sha[:16]}")
    stored = Stored(registry, mv)
    metrics = stored.metrics() or {}
    test, base = _part(metrics, "test"), _part(metrics, "baseline")
    for name, value in test.items():
        if isinstance(value, int | float):
            vs = f" (baseline {_f(base[name])})" if isinstance(base.get(name), int | float) else ""
            summary.add(f"test {name}", f"{_f(value)}{vs}")
    if (lineage := stored.lineage()) is not None:
        for key in ("config_hash", "data_fingerprint", "git_commit", "seed"):
            value = lineage.get(key)
            summary.add(key.replace("_", " "), str(value)[:16] if value is not None else "n/a")
    failures = registry.floor_failures(mv, floor)
    summary.add("SLO floor", "; ".join(failures) or ("passes" if floor else "none set"))
    return summary.add("model card", stored.card_uri() or "none")


def promote(registry: Registry, req: Request, floor: dict[str, float]) -> Summary:
    mv = registry.get(req.model, req.ref)
    done = registry.promote(
        req.model, mv.version, req.stage, floor=floor, force=req.force, reason=req.reason
    )
    if done.unchanged:
        return Summary(f"{mv.label} already holds {req.stage}; nothing changed")
    summary = Summary(f"promoted {mv.label} to {req.stage}")
    previous = done.move.previous
    summary.add("previous", f"v{previous}" if previous is not None else "none")
    summary.add("floor", ", ".join(f"{k} {v}" for k, v in floor.items()) or "none set")
    for failure in done.move.bypassed:
        summary.add("forced past", failure)
    if req.reason:
        summary.add("reason", escape(req.reason))
    return summary.add("wrote", registry.stages_uri(req.model))


def rollback(registry: Registry, req: Request) -> Summary:
    previous = registry.stages(req.model).get(req.stage)
    target = registry.rollback(req.model, req.stage, reason=req.reason)
    summary = Summary(f"rolled back {req.model} {req.stage} to v{target}")
    summary.add("replaced", f"v{previous}")
    return summary.add("wrote", registry.stages_uri(req.model))


def _headline(registry: Registry, mv: ModelVersion) -> str:
    """The version's main test metric; a damaged version says so instead of failing the list."""
    try:
        metrics = Stored(registry, mv).metrics()
    except RegistryError as e:
        return f"DAMAGED: {e}"
    if metrics is None:
        return "no metrics"
    name = main_metric(metrics)
    return f"{name} {_f(metrics['test'][name])}" if name else "no test metrics"


def _part(metrics: object, key: str) -> dict:
    part = metrics.get(key) if isinstance(metrics, dict) else None
    return part if isinstance(part, dict) else {}


def _f(x: float) -> str:
    return f"{x:,}" if isinstance(x, int) else f"{x:.4f}"


def command() -> None:
    """The job with this process's command line (sys.argv[1:] are its arguments)."""
    request, overrides = parse()
    main(lambda cfg: run(cfg, request), argv=overrides)


if __name__ == "__main__":
    command()
