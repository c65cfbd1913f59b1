from aiotcp.cli import main

raise SystemExit(main())
