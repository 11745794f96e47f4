"""`keel retrain` as a script: python jobs/retrain.py ARGS runs keel/cli/retrain.py."""

from keel.cli.retrain import command

if __name__ == "__main__":
    command()
