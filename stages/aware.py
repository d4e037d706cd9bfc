"""DVC stage `aware`: remodiff/pipeline/aware.py."""
from remodiff.pipeline.common import main
from remodiff.pipeline.aware import run

if __name__ == "__main__":
    main(run)
