"""Stage ``compare_table``: the all-imputer comparison collected into ``metrics/comparison.{json,md}``."""
from __future__ import annotations

import json

from remodiff.evaluation.metrics import metric_of_results
from remodiff.pipeline.common import METRICS, compare_run
from remodiff.store import write_json_atomic, write_text_atomic


def run(params: dict) -> dict:
    """Collect the comparison entries into ``metrics/comparison.json`` (``<protocol>.<setting>.<imputer>.<metric>``,
    plus ``upper_bound`` and ``train_mean``) and a Markdown table of the chosen metric."""
    table: dict = {}
    for imputer in params["compare"]["imputers"]:
        result = json.loads(compare_run(imputer).downstream.read_text())
        metric = metric_of_results(result, params["compare"]["metric"], "compare.metric")
        table.setdefault("upper_bound", result["complete"])
        table.setdefault("train_mean", result["train_mean"])
        for protocol, settings in result.items():
            if protocol in ("complete", "train_mean", "imputer"):
                continue
            for setting, cell in settings.items():
                table.setdefault(protocol, {}).setdefault(setting, {})[imputer] = cell["imputed"]
    write_json_atomic(METRICS / "comparison.json", table)
    write_text_atomic(METRICS / "comparison.md", comparison_markdown(table, params["compare"]["imputers"], metric))
    return table


def comparison_markdown(table: dict, imputers: list[str], metric: str) -> str:
    def cell(values: dict) -> str:
        if metric not in values:
            raise ValueError(f"compare.metric {metric!r} is not among the metrics {sorted(values)}")
        ci = values.get(f"{metric}_ci95")
        return f"{values[metric]:.4f}" + (f" ± {ci:.4f}" if ci is not None else "")

    lines = [f"# {metric} per imputer (upper bound {cell(table['upper_bound'])}, "
             f"train-mean floor {cell(table['train_mean'])})", ""]
    for protocol, settings in table.items():
        if protocol in ("upper_bound", "train_mean"):
            continue
        lines += [f"## {protocol}", "", "| setting | " + " | ".join(imputers) + " |",
                  "|---|" + "---|" * len(imputers)]
        lines += [f"| {setting} | " + " | ".join(cell(row[i]) for i in imputers) + " |" for setting, row in settings.items()]
        lines.append("")
    return "\n".join(lines)
