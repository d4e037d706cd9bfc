"""DVC stage `segment`: see remodiff.pipeline.segment."""
from remodiff.cli import run_stage

if __name__ == "__main__":
    run_stage("segment")
