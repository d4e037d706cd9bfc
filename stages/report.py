"""DVC stage `report`: see remodiff.pipeline.report."""
from remodiff.cli import run_stage

if __name__ == "__main__":
    run_stage("report")
