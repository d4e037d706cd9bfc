"""The ``remodiff`` command line: list plug-ins, inspect stores, run a pipeline stage."""
from __future__ import annotations

import logging
from enum import Enum
from importlib import import_module
from pathlib import Path

import typer

app = typer.Typer(help="ReMoDiff: missing-modality imputation for multimodal affect recognition.",
                  no_args_is_help=True, add_completion=False)


# `remodiff list <kind>`: each plug-in point's registry as (its package, its name), imported only when listed
REGISTRIES = {"datasets": ("remodiff.data", "DATASETS"), "extractors": ("remodiff.features", "EXTRACTORS"),
              "imputers": ("remodiff.imputers", "IMPUTERS"), "fusers": ("remodiff.fusion", "FUSERS"),
              "protocols": ("remodiff.evaluation.masks", "PROTOCOLS"), "asr": ("remodiff.data.asr", "ASR_BACKENDS"),
              "sdes": ("remodiff.diffusion", "SDES"), "samplers": ("remodiff.diffusion", "SAMPLERS"),
              "conditionings": ("remodiff.diffusion", "CONDITIONINGS"), "time-grids": ("remodiff.diffusion", "GRIDS")}
Kind = Enum("Kind", {kind: kind for kind in REGISTRIES}, type=str)


def setup_logging() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


@app.command("list")
def list_(kind: Kind = typer.Argument(..., help="which plug-in point")) -> None:
    """Print the registered names of a plug-in point, one per line."""
    package, name = REGISTRIES[kind.value]
    for entry in getattr(import_module(package), name).names():
        typer.echo(entry)


@app.command()
def info(path: Path = typer.Argument(..., exists=True, dir_okay=False, help="an HDF5 store")) -> None:
    """Summarise a segment, feature, mask or reconstruction store."""
    from remodiff.store import describe

    typer.echo(describe(path))


@app.command()
def run(stage: str = typer.Argument(..., help="sample, segment, extract, masks, train_imputer, reconstruct, "
                                               "train_fuser, evaluate, report, compare_train / compare (with "
                                               "--imputer) or compare_table"),
        params: Path = typer.Option(Path("params.yaml"), help="the params file"),
        imputer: str = typer.Option(None, help="the imputer of a `compare_train` / `compare` entry"),
        shard: str = typer.Option(None, help="extract: only shard i/n (every n-th clip, starting at clip i) into "
                                             "its own scratch; default under accelerate launch / torchrun: "
                                             "RANK/WORLD_SIZE"),
        merge: bool = typer.Option(False, help="extract: collect the finished shards into data/features, "
                                               "failing if a clip is in none")) -> None:
    """Run one pipeline stage (what `dvc repro` runs, without DVC's caching)."""
    from functools import partial

    from remodiff.pipeline import stage as stage_run
    from remodiff.pipeline.entry import main

    if (shard is not None or merge) and stage != "extract":
        raise typer.BadParameter("--shard and --merge are options of the extract stage")
    if shard is not None and merge:
        raise typer.BadParameter("--shard extracts one shard, --merge collects them: give one of them")
    try:
        run_stage = stage_run(stage)
    except ValueError as e:
        raise typer.BadParameter(str(e))
    if stage == "extract":
        from remodiff.pipeline.extract import Shard

        try:
            parsed = Shard.parse(shard) if shard is not None else None
        except ValueError as e:
            raise typer.BadParameter(str(e))
        run_stage = partial(run_stage, shard=parsed, merge_only=merge)
    args = ()
    if stage in ("compare_train", "compare"):
        if imputer is None:
            raise typer.BadParameter(f"{stage} needs --imputer NAME (one of compare.imputers)")
        args = (imputer,)
    main(run_stage, *args, params_path=params)


@app.command()
def check(params: Path = typer.Option(Path("params.yaml"), help="the params file"),
          debug: bool = typer.Option(False, "--debug", help="show the full traceback of an error (as REMODIFF_DEBUG=1)")
          ) -> None:
    """Check every setting of the params file in seconds, before any stage runs: prints `<file>: OK (summary)`,
    or one line naming the bad key and exits with status 2."""
    from remodiff.check import check_params, read_params, reported_errors

    with reported_errors(debug or None):
        summary = check_params(read_params(params), source=params.name)
    typer.echo(f"{params.name}: OK ({'; '.join(summary)})")


@app.command("fetch-models")
def fetch_models(params: Path = typer.Option(Path("params.yaml"), help="the params file"),
                 modality: list[str] = typer.Option(None, help="only these modalities (default: every one under "
                                                               "`features`; text includes dataset.asr)")) -> None:
    """Download the pretrained models that params.yaml names (the `features` extractors and the speech
    recogniser `dataset.asr`; Hugging Face hub, open_clip, timm), for machines with internet access; with
    HF_HUB_OFFLINE set it checks that they are in the local cache. Tries every one, then fails if any is missing."""
    from remodiff.data.asr import ASR_BACKENDS, asr_backend
    from remodiff.features import EXTRACTORS
    from remodiff.hub import ModelUnavailableError
    from remodiff.params import load_params

    setup_logging()
    loaded = load_params(params, required=("features",))
    features = loaded["features"]
    unknown = sorted(set(modality or []) - set(features))
    if unknown:
        raise typer.BadParameter(f"modalities {unknown} are not under `features` (has {sorted(features)})")
    # (what, its fetch, its arguments): every chosen extractor, then the ASR that produces the text
    wanted = [(f"{name} ({features[name]['backend']})", EXTRACTORS.get(features[name]["backend"]).fetch,
               {k: v for k, v in features[name].items() if k not in ("backend", "dtype")})
              for name in modality or list(features)]
    asr = (loaded.get("dataset") or {}).get("asr")
    if asr and (not modality or "text" in modality):
        backend, settings = asr_backend(asr)
        wanted.append((f"dataset.asr ({backend})", ASR_BACKENDS.get(backend).fetch, settings))
    failed = 0
    for what, fetch, arguments in wanted:
        try:
            paths = fetch(**arguments)
        except ModelUnavailableError as e:
            typer.echo(f"error: {what}: {e}", err=True)
            failed += 1
            continue
        for path in paths:
            typer.echo(f"{what}: {path}")
        if not paths:
            typer.echo(f"{what}: nothing to fetch")
    if failed:
        typer.echo(f"{failed} of {len(wanted)} models are not available", err=True)
        raise typer.Exit(1)


@app.command("real-data")
def real_data(name: str = typer.Argument(..., help="a dev set: any NAME with metrics/real/NAME/switches.yaml "
                                                   "(`ls metrics/real`: ravdess, fi, ravdess-train50, ...)"),
              shared: Path = typer.Option(None, help="the shared data root (default: $REMODIFF_SHARED, else "
                                                     "../shared/data next to the project)"),
              stage: list[str] = typer.Option(None, help="only these stages (default: the whole pipeline)"),
              update: bool = typer.Option(False, help="re-use the existing scratch: re-run only the stages the current "
                                                      "code and settings change")) -> None:
    """Run the whole DVC pipeline on a real dev set in a scratch copy (.real/NAME) with the settings of
    metrics/real/NAME/switches.yaml, then copy its metrics and run.json (command, commit, stage times) to
    metrics/real/NAME/ for `dvc metrics diff`."""
    from remodiff.realdata import real_data as run_real_data

    setup_logging()
    try:
        run_real_data(name, shared=shared, stages=stage or None, update=update)
    except (FileNotFoundError, ValueError) as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(2)


@app.command()
def results() -> None:
    """Write docs/results.md from every committed real-data run (metrics/real/*/): its comparison table, references
    and training summaries."""
    from remodiff.realdata import write_results

    typer.echo(f"wrote {write_results()}")


if __name__ == "__main__":
    app()
