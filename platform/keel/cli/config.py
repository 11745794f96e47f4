"""Print the composed, resolved config with overrides applied."""

from keel.app import main
from keel.config import KeelConfig, to_yaml

GROUPS = (  # the config groups it reads
    "dataset features model train sweep slo serve "
    "monitor simulate tracking paths ray bench experiment"
)


def show(cfg: KeelConfig) -> None:
    print(to_yaml(cfg), end="")


def command() -> None:
    """The job with this process's command line (sys.argv[1:] are its arguments)."""
    main(show)


if __name__ == "__main__":
    command()
