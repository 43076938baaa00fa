"""lavalamp.daemon: the long-lived display daemon and the `lavalamp` command."""
