"""DVC stage `train_imputer`: remodiff/pipeline/train_imputer.py."""
from remodiff.pipeline.entry import main
from remodiff.pipeline.train_imputer import run

if __name__ == "__main__":
    main(run)
