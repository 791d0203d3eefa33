import sys

from cluster.ecs.cli import main

sys.exit(main())
