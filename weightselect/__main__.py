import sys

from weightselect.cli import main

sys.exit(main())
