"""DVC stage `sample`: see remodiff.pipeline.sample."""
from remodiff.cli import run_stage

if __name__ == "__main__":
    run_stage("sample")
