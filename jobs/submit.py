"""`keel submit` as a script: python jobs/submit.py ARGS runs keel/cli/submit.py."""

from keel.cli.submit import command

if __name__ == "__main__":
    command()
