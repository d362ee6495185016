"""`python -m mloop` runs the command line."""

from mloop.cli.main import main

raise SystemExit(main())
