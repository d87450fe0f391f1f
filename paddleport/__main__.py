from paddleport.cli import main

raise SystemExit(main())
