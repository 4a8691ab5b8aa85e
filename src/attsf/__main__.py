import sys

from attsf.cli import main

sys.exit(main())
