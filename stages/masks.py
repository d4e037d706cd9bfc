"""DVC stage `masks`: remodiff/pipeline/masks.py."""
from remodiff.pipeline.entry import main
from remodiff.pipeline.masks import run

if __name__ == "__main__":
    main(run)
