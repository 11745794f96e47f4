"""`keel validate` as a script: python jobs/validate.py ARGS runs keel/cli/validate.py."""

from keel.cli.validate import command

if __name__ == "__main__":
    command()
