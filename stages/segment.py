"""DVC stage `segment`: remodiff/pipeline/segment.py."""
from remodiff.pipeline.common import main
from remodiff.pipeline.segment import run

if __name__ == "__main__":
    main(run)
