"""`python -m melnet_fast ...` is the `melnet-fast` command."""

import sys

from melnet_fast.cli import main

if __name__ == "__main__":
    sys.exit(main())
