"""DVC matrix stage `compare@<imputer>`: see remodiff.pipeline.compare."""
import sys

from remodiff.cli import run_stage

if __name__ == "__main__":
    run_stage("compare", sys.argv[1])
