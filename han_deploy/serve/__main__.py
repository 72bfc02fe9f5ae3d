"""``python -m han_deploy.serve``: the han-serve command."""

from .cli import main

raise SystemExit(main())
