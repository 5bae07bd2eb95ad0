"""``python -m gist.report RESULT_PATH``: one summary of a result folder (scores and figures)."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path


def summary(result_path: str | Path) -> str:
    """Scores of ``metrics.json`` (GIST and, when present, the expression-only baseline) and the figures."""
    result_path = Path(result_path)
    lines = [f"results in {result_path}/"]
    metrics_path = result_path / "metrics.json"
    if metrics_path.is_file():
        m = json.loads(metrics_path.read_text())
        if "ari" in m:
            lines.append(f"  GIST ({m['method']}, {m['n_clusters']} clusters, selection {m['selection']}): "
                         f"ARI {m['ari']:.3f}  NMI {m['nmi']:.3f}")
        base = m.get("baseline_expression")
        if base:
            lines.append(f"  expression only ({base['method']}, {base['n_clusters']} clusters):       "
                         f"ARI {base['ari']:.3f}  NMI {base['nmi']:.3f}")
    figures = sorted((result_path / "figures").glob("*.*"))
    lines += [f"  figure: {f}" for f in figures]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gist.report", description=__doc__.splitlines()[0])
    parser.add_argument("result_path", help="folder written by test.py (e.g. results/demo)")
    args = parser.parse_args(argv)
    print(summary(args.result_path))
    return 0


if __name__ == "__main__":
    sys.exit(main())
