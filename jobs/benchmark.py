"""`keel benchmark` as a script: python jobs/benchmark.py ARGS runs keel/cli/benchmark.py."""

from keel.cli.benchmark import command

if __name__ == "__main__":
    command()
