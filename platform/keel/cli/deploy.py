"""Write the Ray Serve config file for `serve deploy` on a cluster (or `serve run` here)."""

from keel.app import Summary, main
from keel.config import KeelConfig
from keel.serving import deploy

GROUPS = "serve slo paths ray"  # the config groups it reads


def deploy_job(cfg: KeelConfig) -> Summary:
    written = deploy.write(cfg)
    summary = Summary(f"wrote the Serve config for {cfg.serve.app_name}")
    summary.add("file", written.path)
    for model, versions in written.versions.items():
        summary.add(model, versions)
    summary.add("deploy", deploy.DEPLOY_COMMAND.format(path=written.path))
    summary.add("run here", deploy.RUN_COMMAND.format(path=written.path))
    if env := cfg.serve.auth_token_env:
        summary.add("auth", f"set {env} on every Ray node; the token is not in the file")
    return summary


def command() -> None:
    """The job with this process's command line (sys.argv[1:] are its arguments)."""
    main(deploy_job)


if __name__ == "__main__":
    command()
