"""DVC stage `extract`: remodiff/pipeline/extract.py."""
from remodiff.pipeline.entry import main
from remodiff.pipeline.extract import run

if __name__ == "__main__":
    main(run)
