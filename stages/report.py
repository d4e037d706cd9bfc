"""DVC stage `report`: remodiff/pipeline/report.py."""
from remodiff.pipeline.entry import main
from remodiff.pipeline.report import run

if __name__ == "__main__":
    main(run)
