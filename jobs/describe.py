"""`keel describe` as a script: python jobs/describe.py ARGS runs keel/cli/describe.py."""

from keel.cli.describe import command

if __name__ == "__main__":
    command()
