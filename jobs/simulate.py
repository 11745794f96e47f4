"""`keel simulate` as a script: python jobs/simulate.py ARGS runs keel/cli/simulate.py."""

from keel.cli.simulate import command

if __name__ == "__main__":
    command()
