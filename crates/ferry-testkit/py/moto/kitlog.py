# The test kit's log lines in moto's stderr, for every patch module: one write of the whole
# line under one lock shared by all modules. moto serves requests on many threads, and print()
# writes the text and its newline separately, so two lines could run together (a test counting
# held GETs by line then miscounts).
import sys
import threading

_LOCK = threading.Lock()


def logger(module):
    """A log function whose lines start with `ferry-testkit <module>: `."""
    prefix = f"ferry-testkit {module}: "

    def log(msg):
        with _LOCK:
            sys.stderr.write(prefix + msg + "\n")
            sys.stderr.flush()

    return log
