"""`keel feedback` as a script: python jobs/feedback.py ARGS runs keel/cli/feedback.py."""

from keel.cli.feedback import command

if __name__ == "__main__":
    command()
