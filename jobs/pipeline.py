"""`keel pipeline` as a script: python jobs/pipeline.py ARGS runs keel/cli/pipeline.py."""

from keel.cli.pipeline import command

if __name__ == "__main__":
    command()
