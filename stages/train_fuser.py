"""DVC stage `train_fuser`: see remodiff.pipeline.train_fuser."""
from remodiff.cli import run_stage

if __name__ == "__main__":
    run_stage("train_fuser")
