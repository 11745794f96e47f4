"""`keel sweep` as a script: python jobs/sweep.py ARGS runs keel/cli/sweep.py."""

from keel.cli.sweep import command

if __name__ == "__main__":
    command()
