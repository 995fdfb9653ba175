#!/usr/bin/env python
"""The facegen web demo (same app as ``facegen serve``).

    python app.py --model tiny        # offline; open http://127.0.0.1:7860
    python app.py --help
"""

import sys

from facegen.cli.serve import main

if __name__ == "__main__":
    sys.exit(main())
