"""`keel init` as a script: python jobs/init.py ARGS runs keel/cli/init.py."""

from keel.cli.init import command

if __name__ == "__main__":
    command()
