"""DVC stage `reconstruct`: see remodiff.pipeline.reconstruct."""
from remodiff.cli import run_stage

if __name__ == "__main__":
    run_stage("reconstruct")
