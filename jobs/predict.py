"""`keel predict` as a script: python jobs/predict.py ARGS runs keel/cli/predict.py."""

from keel.cli.predict import command

if __name__ == "__main__":
    command()
