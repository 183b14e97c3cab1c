from exchanged.cli import main

raise SystemExit(main())
