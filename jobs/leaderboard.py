"""`keel leaderboard` as a script: python jobs/leaderboard.py ARGS runs keel/cli/leaderboard.py."""

from keel.cli.leaderboard import command

if __name__ == "__main__":
    command()
