"""Print the composed, resolved config with overrides applied."""

from keel.app import main
from keel.config import KeelConfig, to_yaml


def show(cfg: KeelConfig) -> None:
    print(to_yaml(cfg), end="")


if __name__ == "__main__":
    main(show)
