from moai_tui.cli import main

raise SystemExit(main())
