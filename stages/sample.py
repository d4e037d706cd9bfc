"""DVC stage `sample`: remodiff/pipeline/sample.py."""
from remodiff.pipeline.entry import main
from remodiff.pipeline.sample import run

if __name__ == "__main__":
    main(run)
