"""`keel registry` as a script: python jobs/registry.py ARGS runs keel/cli/registry.py."""

from keel.cli.registry import command

if __name__ == "__main__":
    command()
