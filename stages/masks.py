"""DVC stage `masks`: see remodiff.pipeline.masks."""
from remodiff.cli import run_stage

if __name__ == "__main__":
    run_stage("masks")
