"""`keel config` as a script: python jobs/config.py ARGS runs keel/cli/config.py."""

from keel.cli.config import command

if __name__ == "__main__":
    command()
