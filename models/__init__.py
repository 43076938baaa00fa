"""lavalamp.models: the networks, the latent maths and the checkpoint format of a lamp."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("neural-lavalamp")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"

EXIT_USAGE = 2  # exit status of every `lavalamp` command that refuses its input or config

MAX_MESSAGE = 400  # characters of a one-line error message


def one_line(text: str, limit: int = MAX_MESSAGE) -> str:
    """`text` with every run of whitespace or control characters made one space, cut to `limit`:
    an error message that quotes a hostile file stays one short line."""
    import unicodedata

    text = "".join(" " if unicodedata.category(c) in ("Cc", "Cs", "Zl", "Zp") else c
                   for c in str(text)[:4 * limit])
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit - 3] + "..."
