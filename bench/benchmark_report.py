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


#: The real development sets of each task by technology family (BENCHMARKS.md, protocol): a task
#: score is the mean over the task's families of the family's mean ARI (each section's ARI averaged
#: over seeds first), so six her2st sections weigh as one family; the demo (synthetic) is reported only.
TASK_FAMILIES: dict[str, dict[str, tuple[str, ...]]] = {
    "domains": {
        "DLPFC": ("dlpfc_151510", "dlpfc_151673", "dlpfc_151674"),
        "her2st": ("her2st_A1", "her2st_B1", "her2st_C1", "her2st_D1", "her2st_G2", "her2st_H1"),
        "mouse OB": ("mouse_ob",),
        "STARmap": ("starmap_BZ5", "starmap_BZ9"),
        "BaristaSeq": ("baristaseq_1", "baristaseq_2"),
    },
    "cell types": {
        "CosMx lung5": ("cosmx_lung5",),
        "STARmap": ("starmap_BZ5_types", "starmap_BZ9_types"),
        "CosMx breast": ("cosmx_breast",),
    },
}
#: The plain routes a default must stay near on every section (rule (b)): scanpy's PCA and its neighbour average.
FLOOR_METHODS = ("scanpy", "scanpy_avg")
#: How far below the better floor method a section may fall (rule (b)).
FLOOR_TOLERANCE = 0.05
#: The bootstrap of the paired difference: resamples and the two-sided interval's level.
BOOTSTRAP_RESAMPLES = 4000
BOOTSTRAP_LEVEL = 0.90


def section_means(records: list[dict]) -> pd.DataFrame:
    """Sections x methods: each section's ARI averaged over seeds (errors left out)."""
    frame = pd.DataFrame([r for r in records if "error" not in r])
    if frame.empty:
        return pd.DataFrame()
    return frame.groupby(["dataset", "method"])["ari"].mean().unstack("method")


def family_score(per_section: pd.Series, families: dict[str, tuple[str, ...]]) -> float:
    """The mean over ``families`` of each family's mean of ``per_section`` (NaN if a section is missing)."""
    means = []
    for sections in families.values():
        values = per_section.reindex(list(sections))
        if values.isna().any():
            return float("nan")
        means.append(float(values.mean()))
    return float(np.mean(means))


def bootstrap_interval(per_section: pd.Series, families: dict[str, tuple[str, ...]],
                       resamples: int = BOOTSTRAP_RESAMPLES, level: float = BOOTSTRAP_LEVEL,
                       seed: int = 0) -> tuple[float, float, float]:
    """``(score, low, high)``: :func:`family_score` of ``per_section`` and its ``level`` bootstrap
    interval, sections resampled with replacement within each family (a one-section family stays).

    Give it a paired difference (candidate minus default, per section) to test a change: the
    difference counts when ``low > 0``.
    """
    score = family_score(per_section, families)
    if np.isnan(score):
        return score, float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    draws = np.zeros(resamples)
    for sections in families.values():
        values = per_section.reindex(list(sections)).to_numpy(dtype=np.float64)
        picks = rng.integers(0, len(values), size=(resamples, len(values)))
        draws += values[picks].mean(axis=1)
    draws /= len(families)
    tail = (1.0 - level) / 2.0
    return score, float(np.quantile(draws, tail)), float(np.quantile(draws, 1.0 - tail))


def floor_shortfalls(means: pd.DataFrame, method: str, sections: list[str],
                     floors: tuple[str, ...] = FLOOR_METHODS, tolerance: float = FLOOR_TOLERANCE) -> dict[str, float]:
    """Sections where ``method`` falls more than ``tolerance`` below the better of ``floors``: section ->
    its shortfall (floor minus the method's mean ARI). Sections without the method or any floor are skipped."""
    out = {}
    for section in sections:
        if section not in means.index or method not in means or pd.isna(means.at[section, method]):
            continue
        known = [means.at[section, f] for f in floors if f in means and not pd.isna(means.at[section, f])]
        if known and max(known) - means.at[section, method] > tolerance:
            out[section] = round(float(max(known) - means.at[section, method]), 4)
    return out


def compare_to_default(records: list[dict], candidate: str, default: str, task: str) -> dict:
    """The selection rule (BENCHMARKS.md, protocol) for ``candidate`` against ``default`` on ``task``:
    the task scores, the paired difference with its bootstrap interval, the sections where the
    candidate falls below the floor (:func:`floor_shortfalls`) and ``replaces``: higher score,
    interval above zero and no shortfall. ``complete`` is false (and ``replaces`` with it) unless both
    methods and a floor method have records on every section of the task."""
    families = TASK_FAMILIES[task]
    sections = [s for group in families.values() for s in group]
    means = section_means(records)
    if means.empty or candidate not in means or default not in means:
        return {"task": task, "candidate": candidate, "default": default, "complete": False, "replaces": False}
    diff, low, high = bootstrap_interval(means[candidate] - means[default], families)
    shortfalls = floor_shortfalls(means, candidate, sections)
    floors = [f for f in FLOOR_METHODS if f in means]
    complete = not np.isnan(diff) and bool(floors) and not means.reindex(sections)[floors].isna().all(axis=1).any()
    return {"task": task, "candidate": candidate, "default": default, "complete": complete,
            "score": family_score(means[candidate], families), "default_score": family_score(means[default], families),
            "difference": diff, "low": low, "high": high, "shortfalls": shortfalls,
            "replaces": bool(complete and diff > 0 and low > 0 and not shortfalls)}


def task_scores(records: list[dict], tasks: dict[str, dict[str, tuple[str, ...]]] = TASK_FAMILIES) -> pd.DataFrame:
    """Per task and method: the task score (:func:`family_score`) with its 90% bootstrap interval
    (:func:`bootstrap_interval`), the number of sections with a record (``sets``; the score only counts
    when all are there), the fewest seeds on any of them, the mixture's EM starts
    (:func:`mixture_starts`), the sections below the floor (:func:`floor_shortfalls`) and the mean
    seconds per run; sorted best first within each task."""
    columns = ["task", "method", "sets", "min seeds", "starts", "score", "interval", "below floor", "s/run"]
    frame = pd.DataFrame([r for r in records if "error" not in r])
    if frame.empty:
        return pd.DataFrame(columns=columns)
    means = section_means(records)
    counts = frame.groupby(["dataset", "method"]).size().unstack("method")
    rows = []
    for task, families in tasks.items():
        names = [s for group in families.values() for s in group]
        for method in means.columns:
            present = [s for s in names if s in means.index and not pd.isna(means.at[s, method])]
            if not present:
                continue
            score, low, high = bootstrap_interval(means[method], families)
            part = frame[frame["dataset"].isin(names) & (frame["method"] == method)]
            rows.append({"task": task, "method": method, "sets": f"{len(present)}/{len(names)}",
                         "min seeds": int(counts.loc[present, method].min()), "starts": mixture_starts(part),
                         "score": None if np.isnan(score) else round(score, 3),
                         "interval": "-" if np.isnan(score) else f"{low:.3f} - {high:.3f}",
                         "below floor": len(floor_shortfalls(means, method, names)),
                         "s/run": round(float(part["seconds"].mean()), 1)})
    out = pd.DataFrame(rows, columns=columns)
    return out.sort_values(["task", "score"], ascending=[True, False], na_position="last").reset_index(drop=True)


def task_table(records: list[dict]) -> str:
    """Markdown of :func:`task_scores` (methods missing a set show ``-`` as their score)."""
    scores = task_scores(records)
    if scores.empty:
        return "(no records on the development sets)"
    scores["score"] = [("-" if pd.isna(v) else f"{v:.3f}") for v in scores["score"]]
    return _markdown(scores)


def short_name(family: str, section: str) -> str:
    """A column title: the family, then what tells the section apart (``DLPFC 151673``, ``her2st A1``)."""
    rest = section.split("_", 1)[1] if "_" in section else ""
    if sum(len(f.get(family, ())) for f in TASK_FAMILIES.values()) == 1 or not rest:
        return family
    return f"{family} {rest.replace('_', ' ')}"


def family_table(records: list[dict], task: str, methods: list[str] | None = None) -> str:
    """Markdown: methods x the task's sections grouped by family (mean ± sd ARI over seeds, the
    best mean of each section in bold), then the task score with its 90% interval and seconds per
    run. ``methods``: rows to show, in order (default: every method with a record on the task)."""
    families = TASK_FAMILIES[task]
    sections = [s for group in families.values() for s in group]
    frame = pd.DataFrame([r for r in records if "error" not in r and r.get("dataset") in sections])
    if frame.empty:
        return "(no records on the development sets)"
    means = section_means(records)
    methods = methods or list(dict.fromkeys(frame["method"]))
    best = {s: means.loc[s, [m for m in methods if m in means]].max() for s in sections if s in means.index}
    header = ["method"] + [short_name(fam, s) for fam, group in families.items() for s in group] + ["score (90% interval)", "s/run"]
    rows = []
    for method in methods:
        part = frame[frame["method"] == method]
        if part.empty:
            continue
        cells = []
        for section in sections:
            values = part[part["dataset"] == section]["ari"]
            text = _mean_sd(values)
            if not values.empty and np.isclose(values.mean(), best.get(section, np.nan)):
                text = f"**{text}**"
            cells.append(text)
        score, low, high = bootstrap_interval(means[method], families) if method in means else (np.nan,) * 3
        cells.append("-" if np.isnan(score) else f"{score:.3f} ({low:.3f} - {high:.3f})")
        cells.append(f"{part['seconds'].mean():.1f}")
        rows.append([method] + cells)
    return _markdown(pd.DataFrame(rows, columns=header))


#: Families of the denoising check: the domain sections' and the CosMx sets' (the STARmap cell-type sets
#: share their counts with the domain sections and are left out).
DENOISE_FAMILIES: dict[str, tuple[str, ...]] = {
    **TASK_FAMILIES["domains"], "CosMx": ("cosmx_lung5", "cosmx_breast")}
#: The three measures of the denoising rule and whether higher is better.
DENOISE_MEASURES: dict[str, bool] = {"corr": True, "rmse": False, "auc": True}
#: Shown beside them: the per-gene medians and the split-half marker AUROC of the labelled regions.
GENE_MEASURES: dict[str, bool] = {"gene_corr": True, "gene_rmse": False, "marker_auroc": True}


def denoise_frame(records: list[dict]) -> pd.DataFrame:
    """The denoising records of the current format (``corr`` / ``rmse`` / ``auc``), errors left out."""
    return pd.DataFrame([r for r in records if "error" not in r and "rmse" in r])


def denoise_ranks(records: list[dict], methods: list[str] | None = None) -> pd.DataFrame:
    """Sections x methods: the mean over :data:`DENOISE_MEASURES` of each method's rank on the section
    (seeds averaged first; 1 = best; a missing correlation, e.g. the raw input's, ranks last), among
    ``methods`` (default: those with a record on every section of :data:`DENOISE_FAMILIES`)."""
    frame = denoise_frame(records)
    sections = [s for group in DENOISE_FAMILIES.values() for s in group]
    if frame.empty:
        return pd.DataFrame()
    frame = frame[frame["dataset"].isin(sections)]
    if methods is None:
        present = frame.groupby("method")["dataset"].nunique()
        methods = sorted(present[present == len(sections)].index)
    frame = frame[frame["method"].isin(methods)]
    ranks = []
    for measure, higher in DENOISE_MEASURES.items():
        means = frame.pivot_table(index="dataset", columns="method", values=measure, aggfunc="mean", dropna=False)
        means = means.reindex(index=sections, columns=methods)
        ranks.append(means.rank(axis=1, ascending=not higher, na_option="bottom"))
    return sum(ranks) / len(ranks)


def denoise_rank_scores(records: list[dict]) -> dict[str, tuple[float, float, float]]:
    """Method -> ``(score, low, high)``: its :func:`denoise_ranks` averaged within families then over
    families (lower is better), with the 90% bootstrap interval over sections (:func:`bootstrap_interval`)."""
    ranks = denoise_ranks(records)
    return {m: bootstrap_interval(ranks[m], DENOISE_FAMILIES) for m in ranks.columns}


def compare_denoisers(records: list[dict], candidate: str, default: str) -> dict:
    """The paired rank difference ``candidate - default`` over the complete methods' ranks (negative:
    the candidate ranks better), with its 90% interval; it counts when ``high < 0``."""
    ranks = denoise_ranks(records)
    if candidate not in ranks or default not in ranks:
        return {"complete": False}
    diff, low, high = bootstrap_interval(ranks[candidate] - ranks[default], DENOISE_FAMILIES)
    return {"complete": True, "difference": diff, "low": low, "high": high, "better": bool(high < 0)}


def denoising_table(records: list[dict]) -> str:
    """Markdown: per measure, methods x sets (mean ± sd over seeds, grouped by family, best in bold),
    then every complete method's rank score (lower is better) with its interval and seconds per run."""
    frame = denoise_frame(records)
    if frame.empty:
        return "(no denoising runs)"
    present = set(frame["dataset"])
    columns = [(f, s) for f, group in DENOISE_FAMILIES.items() for s in group if s in present]
    sections = [s for _, s in columns]
    methods = sorted(frame["method"].unique())
    parts = []
    for measure, higher in (DENOISE_MEASURES | GENE_MEASURES).items():
        means = frame.pivot_table(index="method", columns="dataset", values=measure, aggfunc="mean")
        best = means.max() if higher else means.min()
        rows = []
        for method in methods:
            cells = []
            for section in sections:
                values = frame[(frame["method"] == method) & (frame["dataset"] == section)][measure].astype(float)
                text = _mean_sd(values)
                if not values.dropna().empty and np.isclose(values.mean(), best.get(section, np.nan)):
                    text = f"**{text}**"
                cells.append(text)
            rows.append([method] + cells)
        title = {"corr": "correlation at the held-out entries", "rmse": "RMSE at the held-out entries",
                 "auc": "AUC, held-out versus truly-zero entries", "gene_corr": "per-gene correlation (median over genes)",
                 "gene_rmse": "per-gene RMSE (median over genes)",
                 "marker_auroc": "marker AUROC: split-half markers of each labelled region, scored on the other half"}[measure]
        parts += [f"**{title}** ({'higher' if higher else 'lower'} is better)",
                  _markdown(pd.DataFrame(rows, columns=["method"] + [short_name(f, s) if f != "CosMx" else f"CosMx {s.split('_', 1)[1]}" for f, s in columns]))]
    scores = denoise_rank_scores(records)
    seconds = frame.groupby("method")["seconds"].mean()
    rank_rows = [[m, f"{v[0]:.2f} ({v[1]:.2f} - {v[2]:.2f})", f"{seconds.get(m, np.nan):.1f}"]
                 for m, v in sorted(scores.items(), key=lambda kv: kv[1][0])]
    parts += ["**Rank score** (mean over families of the mean rank on correlation, RMSE and AUC; 1 = best; "
              "90% interval over sections; a GIST row's seconds are its training, shared by its `_knn` rows)",
              _markdown(pd.DataFrame(rank_rows, columns=["method", "rank score", "s/run"])) if rank_rows else "(no complete method)"]
    return "\n\n".join(parts)


def errors_list(records: list[dict]) -> str:
    failed = [r for r in records if "error" in r]
    return "\n".join(f"- {r['dataset']} / {r['method']} / seed {r['seed']}: {r['error']}" for r in failed)


def complete_methods(records: list[dict], task: str) -> list[str]:
    """Methods with a record on every section of ``task``, best task score first."""
    families = TASK_FAMILIES[task]
    means = section_means(records)
    if means.empty:
        return []
    scores = {m: family_score(means[m], families) for m in means.columns}
    return sorted((m for m, v in scores.items() if not np.isnan(v)), key=lambda m: -scores[m])


def decisions_table(records: list[dict], default: str = "gist") -> str:
    """Markdown: every complete method of each task put to the selection rule against ``default``
    (:func:`compare_to_default`): task score, paired difference with its 90% interval, sections below
    the floor, and whether it would replace the default."""
    lines = ["| task | method | score | difference to default (90% interval) | sections below the floor (shortfall) | replaces |",
             "|---|---|---|---|---|---|"]
    for task in TASK_FAMILIES:
        for method in complete_methods(records, task):
            out = compare_to_default(records, method, default, task)
            if not out.get("complete"):
                continue
            below = ", ".join(f"{k} {v:.2f}" for k, v in out["shortfalls"].items()) or "none"
            diff = "(the default)" if method == default else f"{out['difference']:+.3f} ({out['low']:+.3f} .. {out['high']:+.3f})"
            lines.append(f"| {task} | {method} | {out['score']:.3f} | {diff} | {below} | "
                         f"{'-' if method == default else ('yes' if out['replaces'] else 'no')} |")
    return "\n".join(lines)


def tables(payload: dict) -> str:
    """All tables as one Markdown block: per task the methods run on every section (by family),
    the selection rule against the default, then the denoising check and failed runs."""
    records = payload.get("records", [])
    parts = []
    for task in TASK_FAMILIES:
        parts += [f"### {task.capitalize()}: ARI mean ± sd over seeds, by family; task score = mean of the family means "
                  "(90% bootstrap interval over sections)", family_table(records, task, complete_methods(records, task) or None)]
    known = {s for families in TASK_FAMILIES.values() for group in families.values() for s in group}
    others = [r for r in records if r.get("dataset") not in known]
    if others:
        parts += ["### Other datasets (the demo, a user's --data): ARI / NMI mean ± sd over seeds", clustering_table(others)]
    parts += ["### The selection rule against the default (`gist`)", decisions_table(records),
              "### Denoising (10% of each cell's non-zero counts held out; AUC: held-out versus truly-zero entries, 0.5 = chance)",
              denoising_table(payload.get("denoising", []))]
    failed = errors_list(records + payload.get("denoising", []))
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
