"""DVC stage `segment`: remodiff/pipeline/segment.py."""
from remodiff.pipeline.entry import main
from remodiff.pipeline.segment import run

if __name__ == "__main__":
    main(run)
