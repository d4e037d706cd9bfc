"""DVC stage `reconstruct`: remodiff/pipeline/reconstruct.py."""
from remodiff.pipeline.entry import main
from remodiff.pipeline.reconstruct import run

if __name__ == "__main__":
    main(run)
