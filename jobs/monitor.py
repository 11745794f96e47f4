"""`keel monitor` as a script: python jobs/monitor.py ARGS runs keel/cli/monitor.py."""

from keel.cli.monitor import command

if __name__ == "__main__":
    command()
