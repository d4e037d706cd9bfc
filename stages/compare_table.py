"""DVC stage `compare_table`: remodiff/pipeline/compare_table.py."""
from remodiff.pipeline.entry import main
from remodiff.pipeline.compare_table import run

if __name__ == "__main__":
    main(run)
