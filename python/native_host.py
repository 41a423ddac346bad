#!/usr/bin/env python3
"""Model Cache's browser native-messaging host on the Python bindings.

The same host as ``mcache native-host``: see ``model_cache.native_host``. A host manifest may
name this script (made executable) as its ``path``; it needs the ``model_cache`` wheel installed
in the interpreter that runs it.
"""

import sys

from model_cache.native_host import main

if __name__ == "__main__":
    sys.exit(main())
