"""gencli.reports: reports in three formats that hold what a fit did, and figures that render."""

from __future__ import annotations

import base64
import io
import json
import os
import re
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from matplotlib.image import imread

import gencli
from gencli.errors import OutputError
from gencli.io.data import read_table
from gencli.reports import plots
from gencli.reports.files import write_report
from gencli.reports.html import render_html
from gencli.reports.json_report import render_json
from gencli.reports.markdown import render_markdown

REPO = Path(__file__).resolve().parents[2]
IRIS = REPO / "sample_data" / "iris.csv"


def summary(X: np.ndarray, columns: list[str]) -> list[dict]:
    return [
        {
            "name": c,
            "mean": np.float64(X[:, j].mean()),  # numpy scalars, as a fit may hand over
            "std": np.float64(X[:, j].std()),
            "min": np.float64(X[:, j].min()),
            "max": np.float64(X[:, j].max()),
        }
        for j, c in enumerate(columns)
    ]


def gmm_record(model: gencli.DensityModel, X: np.ndarray, *, selection=True, validation=True):
    meta = model.metadata
    candidates = [
        {
            "components": k,
            "covariance": cov,
            "bic": 1000.0 + 10 * (k - 3) ** 2 + (7.0 if cov == "diag" else 0.0),
            "aic": 990.0 + 5 * (k - 3) ** 2,
            "heldout_mean_log_likelihood": -1.3 - 0.01 * abs(k - 3),
            "converged": k != 5,
            "iterations": 10 + k,
            "fixes": ["reg_covar raised to 1e-4"] if k == 5 else [],
            "chosen": k == 3 and cov == "full",
        }
        for cov in ("full", "diag")
        for k in range(1, 6)
    ]
    candidates[4]["bic"] = float("nan")  # a failed candidate: must not break strict JSON
    return {
        "model_file": "iris.pkl",
        "family": "gmm",
        "parameters": model.describe(),
        "source": "sample_data/iris.csv",
        "rows": X.shape[0],
        "dropped_rows": 0,
        "columns": list(model.columns),
        "standardized": True,
        "mean_log_likelihood": np.float64(-1.2013),
        "bits_per_dimension": 0.4333,
        "validation": {
            "fraction": 0.2,
            "train_rows": 120,
            "heldout_rows": 30,
            "refit": True,
            "train_mean_log_likelihood": -1.1,
            "train_bits_per_dimension": 0.4,
            "heldout_mean_log_likelihood": -2.2771,
            "heldout_bits_per_dimension": 0.8213,
        }
        if validation
        else None,
        "selection": {"criterion": "bic", "parameter": "components", "candidates": candidates}
        if selection
        else None,
        "fixes": ["K=5 full: reg_covar raised to 1e-4"],
        "warnings": ["column sepal_width looks rounded"],
        "data_summary": summary(X, list(model.columns)),
        "seconds": 1.42,
        "data_sha256": meta["data_sha256"],
        "versions": {"gencli": "0.1.0", "sklearn": "1.9.1", "numpy": "2.4.6", "python": "3.11"},
        "bandwidth_data_units": None,
    }


@pytest.fixture(scope="module")
def iris() -> tuple[gencli.DensityModel, np.ndarray]:
    X = read_table(IRIS).values
    model = gencli.fit(read_table(IRIS), "gmm", components=3)
    return model, X


@pytest.fixture(scope="module")
def moons_kde() -> tuple[gencli.DensityModel, np.ndarray, dict]:
    table = read_table(REPO / "sample_data" / "moons.csv")
    model = gencli.fit(table, "kde", kernel="gaussian", bandwidth="scott")
    h = model.params["bandwidth"]
    record = {
        "model_file": "moons.pkl",
        "family": "kde",
        "parameters": model.describe(),
        "source": "sample_data/moons.csv",
        "rows": table.n_rows,
        "dropped_rows": 0,
        "columns": table.columns,
        "standardized": True,
        "mean_log_likelihood": -1.588,
        "bits_per_dimension": 1.1455,
        "validation": None,
        "selection": {
            "criterion": "cv",
            "parameter": "bandwidth",
            "candidates": [
                {
                    "bandwidth": b,
                    "cv_mean_log_likelihood": -1.6 - (np.log(b / h)) ** 2,
                    "chosen": b == h,
                }
                for b in [h / 4, h / 2, h, 2 * h, 4 * h]
            ],
        },
        "fixes": [],
        "warnings": [],
        "data_summary": summary(table.values, table.columns),
        "seconds": 0.83,
        "data_sha256": model.metadata["data_sha256"],
        "versions": {"gencli": "0.1.0", "sklearn": "1.9.1", "numpy": "2.4.6", "python": "3.11"},
        "bandwidth_data_units": dict(zip(table.columns, h * model.scale, strict=True)),
    }
    return model, table.values, record


# ----------------------------------------------------------------------------- JSON


def test_json_report_holds_every_field_as_strict_json(iris) -> None:
    model, X = iris
    record = gmm_record(model, X)
    written = write_report("report.json", record, model, X)
    assert written == [Path("report.json")]
    text = Path("report.json").read_text()
    report = json.loads(text, parse_constant=lambda c: pytest.fail(f"non-standard {c}"))
    assert report["report"] == "gencli-fit-report" and report["report_version"] == 1
    assert report["rows"] == 150 and report["columns"] == model.columns
    for row, j in zip(report["data_summary"], range(4), strict=True):
        assert row["mean"] == pytest.approx(X[:, j].mean())
        assert row["std"] == pytest.approx(X[:, j].std())
        assert (row["min"], row["max"]) == (X[:, j].min(), X[:, j].max())
    candidates = report["selection"]["candidates"]
    assert len(candidates) == 10 and candidates[4]["bic"] is None  # NaN became null
    assert [c["components"] for c in candidates if c["chosen"]] == [3]
    assert report["validation"]["heldout_mean_log_likelihood"] == -2.2771
    assert report["parameters"]["components"] == 3 and "converged" in report["parameters"]
    assert report["fixes"] and report["warnings"] and report["seconds"] == 1.42
    assert report["versions"]["sklearn"] == "1.9.1"
    assert report["data_sha256"] == model.metadata["data_sha256"]
    means = np.asarray(model.params["means"]) * model.scale + model.shift
    np.testing.assert_allclose(report["model_parameters"]["means"], means)


def test_json_fills_a_missing_data_summary_from_the_rows(iris) -> None:
    model, X = iris
    record = gmm_record(model, X)
    del record["data_summary"], record["versions"]
    report = json.loads(render_json(record, model, X))
    assert report["data_summary"][2]["max"] == X[:, 2].max()
    assert report["versions"]["gencli"] == model.metadata["gencli_version"]


def test_kde_json_has_the_bandwidth_per_column_in_data_units(moons_kde) -> None:
    model, X, record = moons_kde
    report = json.loads(render_json(record, model, X))
    h = model.params["bandwidth"]
    for j, column in enumerate(["x", "y"]):
        assert report["model_parameters"]["bandwidth_data_units"][column] == pytest.approx(
            h * X[:, j].std()
        )
    assert report["selection"]["candidates"][2]["chosen"] is True


# ----------------------------------------------------------------------------- Markdown


def md_table(text: str, header: str) -> list[list[str]]:
    """The rows of the Markdown table whose header line starts with ``header``."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(header))
    rows = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip("|").split(" | ")])
    return rows


def test_markdown_report_has_sections_tables_and_figures_beside_it(iris) -> None:
    model, X = iris
    written = write_report("fit.md", gmm_record(model, X), model, X)
    assert written == [Path("fit.fig1.png"), Path("fit.fig2.png"), Path("fit.md")]
    text = Path("fit.md").read_text()
    for section in (
        "## Summary",
        "## Data",
        "## Chosen model",
        "## Fit: training and held-out rows",
        "## Model selection",
        "## Fixes and warnings",
        "## Reproducibility",
    ):
        assert f"\n{section}\n" in text
    data_rows = md_table(text, "| column | mean | std | min | max |")
    assert [r[0] for r in data_rows] == model.columns
    assert float(data_rows[0][1]) == pytest.approx(X[:, 0].mean(), rel=1e-3)
    assert float(data_rows[3][4]) == pytest.approx(X[:, 3].max())
    candidates = md_table(text, "| K | covariance | BIC |")
    assert len(candidates) == 10
    assert [r[0] for r in candidates if r[-1] == "✓"] == ["3"]
    assert candidates[4][2] == "—"  # the NaN BIC
    held_out = md_table(text, "| rows | count |")
    assert held_out[1][:3] == ["held out", "30", "-2.277"]
    assert "reg_covar raised to 1e-4" in text and "looks rounded" in text
    assert model.metadata["data_sha256"] in text and "1.9.1" in text
    for name in ("fit.fig1.png", "fit.fig2.png"):
        assert f"]({name})" in text
        assert Path(name).read_bytes().startswith(b"\x89PNG")


def test_render_markdown_alone_embeds_figures_as_data_uris(iris) -> None:
    model, X = iris
    text = render_markdown(gmm_record(model, X), model, X)
    uris = re.findall(r"\]\(data:image/png;base64,([A-Za-z0-9+/=]+)\)", text)
    assert len(uris) == 2
    assert all(base64.b64decode(u).startswith(b"\x89PNG") for u in uris)


# ----------------------------------------------------------------------------- HTML


class PageParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.images: list[str] = []
        self.links: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs) -> None:
        self.tags.append(tag)
        values = dict(attrs)
        if tag == "img":
            self.images.append(values.get("src") or "")
        for name in ("src", "href", "srcset", "data"):
            if name in values and tag != "img":
                self.links.append(values[name] or "")

    def handle_data(self, data) -> None:
        self.text.append(data)


def parse(page: str) -> PageParser:
    parser = PageParser()
    parser.feed(page)
    parser.close()
    return parser


def assert_self_contained(page: PageParser, figures: int) -> None:
    assert len(page.images) == figures
    for src in page.images:
        assert src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.split(",", 1)[1]).startswith(b"\x89PNG")
    assert page.links == []  # no external stylesheet, script, frame or link
    assert "script" not in page.tags and "link" not in page.tags and "iframe" not in page.tags


def test_html_report_is_one_self_contained_page(iris) -> None:
    model, X = iris
    write_report("fit.html", gmm_record(model, X), model, X)
    assert sorted(os.listdir(".")) == ["fit.html"]
    page = parse(Path("fit.html").read_text())
    assert_self_contained(page, figures=2)
    assert "style" in page.tags and "table" in page.tags
    text = " ".join(page.text)
    for needle in (
        "sepal_length",
        "Model selection",
        "held out",
        "-2.277",
        "reg_covar raised to 1e-4",
        model.metadata["data_sha256"],
        "EM converged",
    ):
        assert needle in text, needle


def test_html_without_selection_or_validation_says_so(iris) -> None:
    model, X = iris
    page = parse(render_html(gmm_record(model, X, selection=False, validation=False), model, X))
    assert_self_contained(page, figures=1)  # the density figure, no selection curve
    text = " ".join(page.text)
    assert "No selection" in text and "not measured" in text


def test_html_escapes_what_it_shows(iris) -> None:
    model, X = iris
    record = gmm_record(model, X)
    record["source"] = "<script>alert(1)</script>.csv"
    page = parse(render_html(record, model, X))
    assert "script" not in page.tags
    assert "<script>alert(1)</script>.csv" in " ".join(page.text)


def test_kde_html_report(moons_kde) -> None:
    model, X, record = moons_kde
    page = parse(render_html(record, model, X))
    assert_self_contained(page, figures=2)
    text = " ".join(page.text)
    assert "cross-validated mean log-likelihood" in text and "gaussian" in text


# ----------------------------------------------------------------------------- files


def test_an_unknown_extension_names_the_accepted_ones_and_writes_nothing(iris) -> None:
    model, X = iris
    with pytest.raises(OutputError, match=r"\.json.*\.md.*\.html"):
        write_report("report.txt", gmm_record(model, X), model, X)
    with pytest.raises(OutputError, match="no extension"):
        write_report("report", gmm_record(model, X), model, X)
    assert os.listdir(".") == []


def test_a_failure_while_rendering_leaves_the_old_report_alone(iris, monkeypatch) -> None:
    model, X = iris
    Path("fit.html").write_text("old report")

    def broken(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(plots, "density_figure", broken)
    with pytest.raises(RuntimeError):
        write_report("fit.html", gmm_record(model, X), model, X)
    assert Path("fit.html").read_text() == "old report"
    assert sorted(os.listdir(".")) == ["fit.html"]  # no temporary file left


# ----------------------------------------------------------------------------- figures


def png_image(fig) -> np.ndarray:
    payload = plots.figure_png(fig)
    assert payload.startswith(b"\x89PNG")
    return imread(io.BytesIO(payload))


@pytest.mark.parametrize("d", [1, 2, 5])
def test_density_figures_render_for_1_2_and_5_columns(d: int) -> None:
    rng = np.random.default_rng(d)
    X = rng.normal(size=(400, d)) * np.arange(1, d + 1) + 10
    model = gencli.fit(X, "gmm", components=2)
    image = png_image(plots.density_figure(model, X))
    assert image.shape[0] > 300 and image.shape[1] > 500
    assert image[..., :3].std() > 0.05  # not a blank canvas


def test_a_corner_plot_of_many_columns_shows_six_and_says_which() -> None:
    X = np.random.default_rng(0).normal(size=(200, 9))
    model = gencli.fit(X, "gmm", components=1)
    fig = plots.density_figure(model, X)
    assert "the first 6 of 9 columns: x0, x1, x2, x3, x4, x5" in fig.get_suptitle()
    assert len([ax for ax in fig.axes if ax.axison]) == 6 * 7 // 2


def test_a_kde_density_figure_renders() -> None:
    X = np.random.default_rng(1).normal(size=(300, 2))
    model = gencli.fit(X, "kde", kernel="epanechnikov", bandwidth="scott")
    assert png_image(plots.density_figure(model, X)).shape[0] > 300


def test_selection_figures(iris, moons_kde) -> None:
    model, X = iris
    gmm = plots.selection_figure(gmm_record(model, X)["selection"])
    assert gmm is not None
    legend = gmm.axes[0].get_legend()
    assert legend is not None
    assert [t.get_text() for t in legend.get_texts()] == ["full", "diag"]
    assert gmm.axes[0].get_ylabel() == "BIC (lower is better)"
    kde = plots.selection_figure(moons_kde[2]["selection"])
    assert kde is not None and kde.axes[0].get_xscale() == "log"
    assert png_image(kde).shape[0] > 200
    assert plots.selection_figure(None) is None
    assert plots.selection_figure({"criterion": "bic", "candidates": []}) is None


def test_an_evaluation_report_of_one_column(iris) -> None:
    from gencli.evaluate import evaluate

    X = np.random.default_rng(3).normal(5, 2, size=(300, 1))
    model = gencli.fit(X, "gmm", components=1)
    result = evaluate(model, X, n_permutations=20)
    page = parse(render_html({**result, "model_file": "m.pkl", "source": "x.csv"}, model, X))
    assert_self_contained(page, figures=1)  # the density; no correlation matrices for one column
    text = " ".join(page.text)
    assert "Not compared" in text
    assert "very rows the model was trained on" in text
    report = json.loads(render_json(result, model, X))
    assert report["report"] == "gencli-evaluation-report"
    assert report["correlation"]["max_abs_difference"] is None
