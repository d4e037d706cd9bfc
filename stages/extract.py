"""DVC stage `extract`: see remodiff.pipeline.extract."""
from remodiff.cli import run_stage

if __name__ == "__main__":
    run_stage("extract")
