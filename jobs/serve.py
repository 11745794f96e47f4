"""`keel serve` as a script: python jobs/serve.py ARGS runs keel/cli/serve.py."""

from keel.cli.serve import command

if __name__ == "__main__":
    command()
