"""Every bad input of tests/reliability_cases.py gives its documented outcome (docs/reliability.md):
one clear message and exit code 2 for an input error, with nothing written; a warning or a
documented behaviour otherwise; never a traceback."""

import warnings

import pytest

from reliability_cases import CASES, DOC, END, START, table


def _main(script):
    from gist import cli
    from gist.cli import figures

    return {"train.py": cli.train_main, "test.py": cli.test_main, "extract_features.py": cli.extract_main,
            "spatial.py": figures.spatial_main, "violin.py": figures.violin_main,
            "mark_gene.py": figures.mark_gene_main}[script]


def _files(folder):
    return {p for p in folder.rglob("*") if p.is_file()}


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input(case, tmp_path, capsys):
    script, *args = case.build(tmp_path)
    before = _files(tmp_path)
    capsys.readouterr()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            code = _main(script)(args)
        except SystemExit as exc:
            code = exc.code
    out = capsys.readouterr()
    text = out.out + out.err + "\n".join(str(w.message) for w in caught)
    assert code == case.code, text[-3000:]
    assert case.message in text, text[-3000:]
    assert "Traceback" not in text
    if case.outcome == "error":
        assert f"{script}: error:" in out.err or "error:" in out.err
        assert _files(tmp_path) == before, "an input error must leave nothing written"
    if case.outcome == "warning":
        assert any(case.message in str(w.message) for w in caught), "the warning must be a Python warning"


def test_the_documented_table_is_this_list():
    text = DOC.read_text()
    assert len(CASES) >= 30 and len({c.id for c in CASES}) == len(CASES)
    assert text.split(START, 1)[1].split(END, 1)[0].strip() == table(), \
        "docs/reliability.md is out of date: run python tests/reliability_cases.py --write"
