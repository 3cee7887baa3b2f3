"""Daily-file exports: a day's rows per route, handed to the export type."""


def tick():
    """Create and enqueue the files that are due (built in the FTP issue)."""
    return 0


def build_batch(delivery):
    raise NotImplementedError("daily files are built in the FTP issue")


def write_history(delivery, message):
    """One history message per customer in the file (built in the FTP issue)."""
