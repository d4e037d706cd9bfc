"""DVC stage `reconstruct`: remodiff/pipeline/reconstruct.py."""
from remodiff.pipeline.common import main
from remodiff.pipeline.reconstruct import run

if __name__ == "__main__":
    main(run)
