"""`keel deploy` as a script: python jobs/deploy.py ARGS runs keel/cli/deploy.py."""

from keel.cli.deploy import command

if __name__ == "__main__":
    command()
