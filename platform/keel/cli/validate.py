"""Load the dataset, validate it, write the validation report and the quarantine."""

from keel import runtime
from keel.app import Summary, main
from keel.config import KeelConfig
from keel.data.validation import describe, validate_source

GROUPS = "dataset paths ray"  # the config groups it reads


def validate(cfg: KeelConfig) -> Summary:
    runtime.ensure(cfg)
    report = validate_source(cfg.dataset, cfg.paths.reports).report
    return Summary(f"validated dataset '{cfg.dataset.name}'", describe(report))


def command() -> None:
    """The job with this process's command line (sys.argv[1:] are its arguments)."""
    main(validate)


if __name__ == "__main__":
    command()
