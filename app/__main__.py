"""`python -m app` is the same as the `hotline` command."""

from app.cli import main

raise SystemExit(main())
