"""List, show, promote and roll back registered model versions.

    keel registry list [overrides]
    keel registry show MODEL [VERSION|STAGE|latest] [overrides]
    keel registry promote MODEL VERSION [--stage production] [--force] [--reason TEXT] [overrides]
    keel registry rollback MODEL [--stage production] [--reason TEXT] [overrides]

The registry is cfg.paths.registry; promote checks cfg.slo.quality_floor, so pass the overrides
that pick the model's floor (experiment=listings, or +slo.quality_floor.roc_auc=0.75).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from rich.markup import escape

from keel.app import Summary, main
from keel.config import KeelConfig
from keel.registry import ModelVersion, Registry, RegistryError, Stored, main_metric

GROUPS = "slo dataset paths"  # the config groups it reads


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="keel registry",
        description="List, show, promote and roll back registered model versions.",
        epilog="Other key=value arguments are config overrides (experiment=listings, "
        "paths.root=s3://bucket/keel, +slo.quality_floor.roc_auc=0.75).",
    )
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    sub.add_parser("list", help="every model: versions, stages, headline test metric")
    show = sub.add_parser("show", help="one version: manifest, metrics, lineage, model card")
    show.add_argument("model", metavar="MODEL")
    show.add_argument(
        "ref", nargs="?", metavar="VERSION|STAGE", help="default: production, else latest"
    )
    promote = sub.add_parser("promote", help="move a stage to a version (checks the SLO floor)")
    promote.add_argument("model", metavar="MODEL")
    promote.add_argument("version", metavar="VERSION", help="a number, latest, or a stage")
    promote.add_argument("--stage", default="production")
    promote.add_argument("--force", action="store_true", help="promote below the SLO floor")
    promote.add_argument("--reason", default="", help="recorded in the stage history")
    rollback = sub.add_parser("rollback", help="give a stage back to its previous version")
    rollback.add_argument("model", metavar="MODEL")
    rollback.add_argument("--stage", default="production")
    rollback.add_argument("--reason", default="", help="recorded in the stage history")
    return p


def parse(argv: Sequence[str]) -> tuple[argparse.Namespace, list[str]]:
    """Subcommand and flags for argparse; key=value overrides go on to the config.

    A key=value token in a positional's place (`show churn experiment=x`) is an override, so
    it is taken out and the rest parsed again.
    """
    p, args, taken = parser(), list(argv), []
    while True:
        ns, rest = p.parse_known_args(args)
        misread = [v for k in ("model", "version", "ref") if "=" in str(v := getattr(ns, k, ""))]
        if not misread:
            break
        taken.append(misread[0])
        args.remove(misread[0])
    unknown = [a for a in rest if a.startswith("-") or not ("=" in a or a.startswith("~"))]
    if unknown:
        p.error(f"unrecognized arguments: {' '.join(unknown)}")
    overrides = set(taken) | set(rest)
    return ns, [a for a in argv if a in overrides]


def run(cfg: KeelConfig, ns: argparse.Namespace) -> Summary:
    registry = Registry(cfg.paths.registry)
    if ns.command == "list":
        return list_models(registry)
    if ns.command == "show":
        return show(registry, ns.model, ns.ref, dict(cfg.slo.quality_floor))
    if ns.command == "promote":
        return promote(registry, ns, dict(cfg.slo.quality_floor))
    return rollback(registry, ns)


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


def promote(registry: Registry, ns: argparse.Namespace, floor: dict[str, float]) -> Summary:
    mv = registry.get(ns.model, ns.version)
    done = registry.promote(
        ns.model, mv.version, ns.stage, floor=floor, force=ns.force, reason=ns.reason
    )
    if done.unchanged:
        return Summary(f"{mv.label} already holds {ns.stage}; nothing changed")
    summary = Summary(f"promoted {mv.label} to {ns.stage}")
    previous = done.move.previous
    summary.add("previous", f"v{previous}" if previous is not None else "none")
    summary.add("floor", ", ".join(f"{k} {v}" for k, v in floor.items()) or "none set")
    for failure in done.move.bypassed:
        summary.add("forced past", failure)
    if ns.reason:
        summary.add("reason", escape(ns.reason))
    return summary.add("wrote", registry.stages_uri(ns.model))


def rollback(registry: Registry, ns: argparse.Namespace) -> Summary:
    previous = registry.stages(ns.model).get(ns.stage)
    target = registry.rollback(ns.model, ns.stage, reason=ns.reason)
    summary = Summary(f"rolled back {ns.model} {ns.stage} to v{target}")
    summary.add("replaced", f"v{previous}")
    return summary.add("wrote", registry.stages_uri(ns.model))


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
    args, overrides = parse(sys.argv[1:])
    main(lambda cfg: run(cfg, args), argv=overrides)


if __name__ == "__main__":
    command()
