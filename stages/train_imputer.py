"""DVC stage `train_imputer`: see remodiff.pipeline.train_imputer."""
from remodiff.cli import run_stage

if __name__ == "__main__":
    run_stage("train_imputer")
