"""DVC matrix stage `compare@<imputer>`: remodiff/pipeline/compare.py."""
import sys

from remodiff.pipeline.entry import main
from remodiff.pipeline.compare import run

if __name__ == "__main__":
    main(run, sys.argv[1])
