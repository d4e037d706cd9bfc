"""DVC matrix stage `compare_train@<imputer>`: remodiff/pipeline/compare_train.py."""
import sys

from remodiff.pipeline.entry import main
from remodiff.pipeline.compare_train import run

if __name__ == "__main__":
    main(run, sys.argv[1])
