"""How a long-lived Ludus process (the web server, a Celery worker) settles once start-up is done.

- The start-up heap leaves the garbage collector's full passes. After Django and the apps are
  imported, a process holds hundreds of thousands of long-lived objects (modules, classes, URL
  patterns, templates). A full collection walks all of them: measured at about 190 ms in a process
  with Django set up and 256 websockets open, a pause in which its event loop serves nothing.
  `gc.freeze()` moves everything alive at start-up to a permanent generation that collections skip
  (as Instagram does for its Django workers); what is made later is collected as usual.
- Its threads take turns at the GIL every SWITCH_INTERVAL_MS (LUDUS_SWITCH_INTERVAL_MS) instead of
  Python's 5 ms: a thread whose database or Redis reply has arrived waits for the GIL at most that
  long while another thread computes (see config.settings for what it changed).
"""

from __future__ import annotations

import gc
import sys


def settle() -> None:
    from django.conf import settings

    sys.setswitchinterval(settings.SWITCH_INTERVAL_MS / 1000)
    freeze_startup_heap()


def freeze_startup_heap() -> None:
    gc.collect()  # what start-up left as garbage goes now, instead of living on frozen
    gc.freeze()
