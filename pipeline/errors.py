"""Typed errors users see, one per stage, all :class:`SpamTuneError`.

Every problem a user can fix (bad config, bad data file, missing optional dependency, no network)
is raised as a :class:`SpamTuneError` subclass with a one-line message that says what is wrong and how
to fix it. The CLI prints it as ``error: <message>`` and exits with status 2, without a traceback; any
other exception is a bug and keeps its traceback. Stages raise their own subclass, so callers can tell
where a problem came from without reading the message.
"""

from __future__ import annotations

MAX_QUOTED_CHARS = 300
"""Library errors quoted inside our messages are cut to this length."""


class SpamTuneError(Exception):
    """A user-fixable problem; ``str(err)`` is a single line naming the problem and the fix."""

    exit_code = 2
    """The CLI's exit status for this error."""

    def __init__(self, message: str) -> None:
        # Messages quote file names and library errors; a stray newline in them must not break the
        # CLI's one-line "error: ..." contract.
        super().__init__(str(message).replace("\r", " ").replace("\n", " "))


class ConfigError(SpamTuneError, ValueError):
    """The configuration (YAML file or ``key=value`` override) is invalid. Raised by :mod:`pipeline.config` only."""


class DataError(SpamTuneError, ValueError):
    """The input data is missing, unreadable or does not have the expected shape."""


class ModelError(SpamTuneError):
    """A model, tokenizer or adapter cannot be loaded or set up as asked."""


class TrainingError(SpamTuneError):
    """Training cannot start or continue (bad checkpoint, settings TrainingArguments rejects)."""


class TrainingInterrupted(TrainingError):
    """SIGINT/SIGTERM stopped training at a step boundary, after a checkpoint was written; exit 128 + signal.

    Like a shell, the exit status says which signal stopped the run (130: Ctrl-C, 143: SIGTERM), so schedulers and
    scripts can tell an interruption from a failure.
    """

    def __init__(self, message: str, *, signum: int, checkpoint: str | None) -> None:
        super().__init__(message)
        self.exit_code = 128 + signum
        self.checkpoint = checkpoint
        self.resume_hint: str | None = None
        """The command that continues the run (set by the CLI, which knows how the run was started)."""


class ModelFolderError(SpamTuneError):
    """A saved model folder is missing, incomplete or not a spam-tune/transformers model."""


class ExportError(SpamTuneError):
    """A model folder cannot be exported to another format (ONNX): exporter missing, export failed or unfaithful."""


class PushError(SpamTuneError):
    """Uploading to the Hugging Face Hub failed (token, permissions, repo id, network)."""


class ServeError(SpamTuneError):
    """The inference server cannot start, or an input cannot be classified."""


def one_line(err: BaseException | str, limit: int = MAX_QUOTED_CHARS) -> str:
    """A library error (or any text) squeezed onto one line and cut to ``limit`` characters."""
    text = " ".join(str(err).split()) or type(err).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."
