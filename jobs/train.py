"""`keel train` as a script: python jobs/train.py ARGS runs keel/cli/train.py."""

from keel.cli.train import command

if __name__ == "__main__":
    command()
