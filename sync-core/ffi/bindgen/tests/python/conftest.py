"""pytest set-up for the bindings suite.

The library's own threads (the tokio workers that finish async calls, the event thread)
call back into Python: an async call's completion wakes the awaiting coroutine from the
worker that finished it. A worker can still be on its way out of such a callback when the
last test returns; if CPython's finalization has begun by then, CPython ends that foreign
thread with pthread_exit, whose forced unwind the runtime cannot let through and which aborts
the process ("FATAL: exception not rethrown") after every test has passed. That is a property
of interpreter shutdown (an app's process never finalizes an interpreter under the library),
so the suite ends its process as soon as pytest has reported, with pytest's own exit status.
"""

import os
import sys

_status = 0


def pytest_sessionfinish(session, exitstatus):
    global _status
    _status = int(exitstatus)


def pytest_unconfigure(config):
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(_status)
