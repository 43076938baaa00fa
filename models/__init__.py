"""lavalamp.models: the networks, the latent maths and the checkpoint format of a lamp."""

import errno
from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("neural-lavalamp")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"

EXIT_USAGE = 2  # exit status of every `lavalamp` command that refuses its input or config
EXIT_FAILURE = 1  # exit status of a failure that a retry (or a supervisor's restart) could mend

# OS errors a retry could mend (space freed, a device back, a busy file let go): exit 1, not 2.
RETRYABLE_ERRNOS = frozenset(getattr(errno, name) for name in (
    "ENOSPC", "EDQUOT", "EIO", "EAGAIN", "EBUSY", "ETXTBSY", "ENOMEM", "EINTR", "ETIMEDOUT",
    "ENFILE", "EMFILE", "ENOLCK", "ESTALE", "ENETDOWN", "ENETUNREACH", "EHOSTUNREACH")
    if hasattr(errno, name))


def os_error_exit(exc: OSError) -> tuple[int, str]:
    """The exit status for an OS error (EXIT_FAILURE if a retry could succeed, else EXIT_USAGE)
    and one line naming the file and the problem."""
    where = f"{exc.filename}: " if exc.filename else ""
    text = one_line(f"{where}{exc.strerror or exc}")
    return (EXIT_FAILURE if exc.errno in RETRYABLE_ERRNOS else EXIT_USAGE), text

MAX_MESSAGE = 400  # characters of a one-line error message


def one_line(text: str, limit: int = MAX_MESSAGE) -> str:
    """`text` with every run of whitespace or control characters made one space, cut to `limit`:
    an error message that quotes a hostile file stays one short line."""
    import unicodedata

    text = "".join(" " if unicodedata.category(c) in ("Cc", "Cs", "Zl", "Zp") else c
                   for c in str(text)[:4 * limit])
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit - 3] + "..."
