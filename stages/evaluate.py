"""DVC stage `evaluate`: remodiff/pipeline/evaluate.py."""
from remodiff.pipeline.entry import main
from remodiff.pipeline.evaluate import run

if __name__ == "__main__":
    main(run)
