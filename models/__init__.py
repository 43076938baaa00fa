"""lavalamp.models: the networks, the latent maths and the checkpoint format of a lamp."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("neural-lavalamp")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"

EXIT_USAGE = 2  # exit status of every `lavalamp` command that refuses its input or config
