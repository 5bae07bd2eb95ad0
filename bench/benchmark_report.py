"""Tables of benchmark records: mean +- sd over seeds, as Markdown, and the records file itself."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd

from gist.errors import GistInputError
from gist.utils import atomic_path

START, END = "<!-- benchmark-tables:start -->", "<!-- benchmark-tables:end -->"


def read_records(path: str | Path) -> dict:
    """The benchmark file (``{"machine", "settings", "records", "denoising"}``), empty when absent."""
    path = Path(path)
    if not path.is_file():
        return {"records": [], "denoising": []}
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise GistInputError(f"{path} is not valid JSON ({err})") from None


def write_records(path: str | Path, payload: dict) -> None:
    with atomic_path(Path(path)) as tmp:
        tmp.write_text(json.dumps(payload, indent=1, default=str) + "\n")


def _mean_sd(values: pd.Series) -> str:
    values = values.dropna()
    if values.empty:
        return "-"
    sd = float(values.std(ddof=1)) if len(values) > 1 else 0.0
    return f"{values.mean():.3f} ± {sd:.3f}"


#: Clusterers fitted as a Gaussian mixture; their records before ``restarts`` was recorded used one EM start.
MIXTURE_CLUSTERERS = ("mclust", "hmrf")


def mixture_starts(group: pd.DataFrame) -> str:
    """The EM starts of a group's mixture fits (``"10"``, ``"1"``, or ``"1/10"`` when mixed); ``-``
    for leiden. Records without ``restarts`` predate the restarts (one start)."""
    if "cluster" not in group:
        return "-"
    mixture = group[group["cluster"].isin(MIXTURE_CLUSTERERS)]
    if mixture.empty:
        return "-"
    starts = mixture["restarts"] if "restarts" in mixture else pd.Series(1, index=mixture.index)
    return "/".join(str(v) for v in sorted({int(v) for v in starts.fillna(1)}))


def summarise(records: list[dict]) -> pd.DataFrame:
    """One row per dataset x method: ARI and NMI mean ± sd over seeds, the mixture's EM starts
    (:func:`mixture_starts`), mean seconds, max peak MB."""
    frame = pd.DataFrame([r for r in records if "error" not in r])
    if frame.empty:
        return pd.DataFrame(columns=["dataset", "method", "seeds", "ARI", "NMI", "starts", "seconds", "peak MB"])
    rows = []
    for (dataset, method), group in frame.groupby(["dataset", "method"], sort=False):
        rows.append({"dataset": dataset, "method": method, "seeds": len(group), "ARI": _mean_sd(group["ari"]),
                     "NMI": _mean_sd(group["nmi"]), "starts": mixture_starts(group), "seconds": f"{group['seconds'].mean():.1f}",
                     "peak MB": f"{group['peak_mb'].max():.0f}", "ari_mean": group["ari"].mean()})
    return pd.DataFrame(rows)


def _markdown(frame: pd.DataFrame) -> str:
    header = "| " + " | ".join(frame.columns) + " |"
    rule = "|" + "|".join("---" for _ in frame.columns) + "|"
    body = ["| " + " | ".join(str(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join([header, rule, *body])


def clustering_table(records: list[dict]) -> str:
    """Markdown: per dataset, every method's scores, best mean ARI in bold."""
    summary = summarise(records)
    blocks = []
    for dataset, group in summary.groupby("dataset", sort=False):
        best = group["ari_mean"].max()
        shown = group.drop(columns=["dataset", "ari_mean"]).copy()
        shown.loc[group["ari_mean"] == best, "ARI"] = "**" + shown.loc[group["ari_mean"] == best, "ARI"] + "**"
        blocks.append(f"**{dataset}**\n\n{_markdown(shown)}")
    return "\n\n".join(blocks)


#: The real development sets of each task (BENCHMARKS.md, protocol): a candidate's score is its
#: mean ARI over its task's sets, each set weighing the same; the demo (synthetic) is reported only.
TASK_SETS = {
    "domains": ("dlpfc_151510", "her2st_B1", "her2st_C1", "her2st_D1", "her2st_G2", "her2st_H1"),
    "cell types": ("cosmx_lung5",),
}


def task_scores(records: list[dict], tasks: dict[str, tuple[str, ...]] = TASK_SETS) -> pd.DataFrame:
    """Per task and method: the mean over the task's sets of the per-set mean ARI (``score``), the
    number of sets with a record (``sets``; the score only counts when all are there), the fewest
    seeds on any of them and the mixture's EM starts (:func:`mixture_starts`); sorted best first
    within each task."""
    columns = ["task", "method", "sets", "min seeds", "starts", "score"]
    frame = pd.DataFrame([r for r in records if "error" not in r])
    rows = []
    if frame.empty:
        return pd.DataFrame(columns=columns)
    per_set = frame.groupby(["dataset", "method"])["ari"].agg(["mean", "size"]).reset_index()
    for task, names in tasks.items():
        part = per_set[per_set["dataset"].isin(names)]
        for method, group in part.groupby("method"):
            complete = len(group) == len(names)
            rows.append({"task": task, "method": method, "sets": f"{len(group)}/{len(names)}",
                         "min seeds": int(group["size"].min()),
                         "starts": mixture_starts(frame[frame["dataset"].isin(names) & (frame["method"] == method)]),
                         "score": round(float(group["mean"].mean()), 3) if complete else None})
    out = pd.DataFrame(rows, columns=columns)
    return out.sort_values(["task", "score"], ascending=[True, False], na_position="last").reset_index(drop=True)


def task_table(records: list[dict]) -> str:
    """Markdown of :func:`task_scores` (methods missing a set show ``-`` as their score)."""
    scores = task_scores(records)
    if scores.empty:
        return "(no records on the development sets)"
    scores["score"] = [("-" if pd.isna(v) else f"{v:.3f}") for v in scores["score"]]
    return _markdown(scores)


def denoising_table(records: list[dict]) -> str:
    """Markdown: correlation and RMSE at held-out entries, and the held-out-versus-zero AUC, for the
    model and the two baselines."""

    def fmt(value) -> str:
        return "-" if value is None or (isinstance(value, float) and np.isnan(value)) else f"{value:.3f}"

    rows = []
    for r in records:
        if "error" in r:
            continue
        rows.append({"dataset": r["dataset"], "method": r["method"], "held-out entries": r["held_out"],
                     "GIST corr": fmt(r["model_corr"]), "GIST RMSE": fmt(r["model_rmse"]), "GIST AUC": fmt(r.get("model_auc")),
                     "zeros RMSE": fmt(r["raw_rmse"]),
                     "neighbour-mean corr": fmt(r["neighbour_mean_corr"]), "neighbour-mean RMSE": fmt(r["neighbour_mean_rmse"]),
                     "neighbour-mean AUC": fmt(r.get("neighbour_mean_auc"))})
    return _markdown(pd.DataFrame(rows)) if rows else "(no denoising runs)"


def errors_list(records: list[dict]) -> str:
    failed = [r for r in records if "error" in r]
    return "\n".join(f"- {r['dataset']} / {r['method']} / seed {r['seed']}: {r['error']}" for r in failed)


def tables(payload: dict) -> str:
    """All tables as one Markdown block."""
    parts = ["### Task scores (the rule that picks the default: mean over the task's real sets of the mean ARI)",
             task_table(payload.get("records", [])),
             "### Clustering (ARI / NMI mean ± sd over seeds; final checkpoint, no label-based selection)",
             clustering_table(payload.get("records", [])),
             "### Denoising (10% of each cell's non-zero counts held out; AUC: held-out versus truly-zero entries, 0.5 = chance)",
             denoising_table(payload.get("denoising", []))]
    failed = errors_list(payload.get("records", []) + payload.get("denoising", []))
    if failed:
        parts += ["### Runs that did not complete", failed]
    return "\n\n".join(parts)


def update_markdown(path: str | Path, block: str) -> None:
    """Replace the text between the benchmark-table markers in ``path`` with ``block``."""
    path = Path(path)
    text = path.read_text() if path.is_file() else ""
    if START not in text or END not in text:
        raise GistInputError(f"{path} has no {START} ... {END} markers to put the tables between")
    new = re.sub(re.escape(START) + r".*?" + re.escape(END), lambda _: f"{START}\n{block}\n{END}", text, flags=re.S)
    with atomic_path(path) as tmp:
        tmp.write_text(new)
