"""keel's exception types. Each message tells the user what to change."""


class KeelError(Exception):
    """Base class: a problem the user can fix; the CLI prints the message without a traceback."""

    exit_code = 1


class ConfigError(KeelError):
    """A config that does not compose or breaks a schema rule; names the key path."""

    exit_code = 2


class DataError(KeelError):
    """Unreadable or malformed input data; names the file and the column."""

    exit_code = 1


class ValidationFailed(KeelError):
    """The invalid-row fraction exceeds the dataset's validation policy."""

    exit_code = 1


class RegistryError(KeelError):
    """A missing model, version or stage, a damaged version, or a refused stage change."""


class TrainingFailed(KeelError):
    """A Ray Train run that failed more often than train.max_failures lets it resume."""

    exit_code = 1


class FeatureError(KeelError):
    """A feature pipeline that cannot be fitted, loaded or applied."""

    exit_code = 1
