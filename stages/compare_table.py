"""DVC stage `compare_table`: see remodiff.pipeline.compare_table."""
from remodiff.cli import run_stage

if __name__ == "__main__":
    run_stage("compare_table")
