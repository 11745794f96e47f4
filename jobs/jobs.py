"""`keel jobs` as a script: python jobs/jobs.py ARGS runs keel/cli/jobs.py."""

from keel.cli.jobs import command

if __name__ == "__main__":
    command()
