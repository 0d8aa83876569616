import sys

from ecg_pipeline.cli import main

sys.exit(main())
