"""DVC stage `evaluate`: see remodiff.pipeline.evaluate."""
from remodiff.cli import run_stage

if __name__ == "__main__":
    run_stage("evaluate")
