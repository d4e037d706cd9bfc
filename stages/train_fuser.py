"""DVC stage `train_fuser`: remodiff/pipeline/train_fuser.py."""
from remodiff.pipeline.entry import main
from remodiff.pipeline.train_fuser import run

if __name__ == "__main__":
    main(run)
