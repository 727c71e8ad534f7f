"""Settings, atomic writes, the environment report and the chapter-00 helpers."""

from __future__ import annotations

import json

import pytest

from slmlab import DecodingConfig
from slmlab.environment import environment_report
from slmlab.io import atomic_write, atomic_write_json
from slmlab.playground import compare_strategies, default_strategies, playground, plot_strategies
from slmlab.settings import env_flag, quick_mode


@pytest.mark.parametrize("value, expected", [("1", True), ("true", True), ("0", False), ("", False), (None, False)])
def test_quick_mode_from_environment(monkeypatch, value, expected):
    if value is None:
        monkeypatch.delenv("SLMLAB_QUICK", raising=False)
    else:
        monkeypatch.setenv("SLMLAB_QUICK", value)
    assert quick_mode() is expected
    assert quick_mode(True) is True and quick_mode(False) is False
    assert env_flag("SLMLAB_QUICK") is expected


def test_atomic_write_keeps_the_old_file_on_failure(tmp_path):
    target = tmp_path / "metrics.json"
    atomic_write_json(target, {"ok": 1})

    def broken(tmp):
        tmp.write_text("half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_write(target, broken)
    assert json.loads(target.read_text()) == {"ok": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]


def test_environment_report_has_the_essentials():
    report = environment_report()
    for key in ("python", "torch version", "torch device", "RAM total (GiB)", "default backend", "backends available"):
        assert key in report
    assert report["RAM total (GiB)"] > 0


def test_compare_strategies_table(tiny_torch):
    strategies = default_strategies(max_new_tokens=4)
    table = compare_strategies(tiny_torch, ["hello", "a"], strategies, progress=False)
    assert len(table) == 2 * len(strategies)
    assert set(table["strategy"]) == set(strategies)
    assert (table["new tokens"] <= 4).all()
    figure = plot_strategies(table)
    assert len(figure.axes) == 2


def test_compare_strategies_skips_beam_on_mlx(tiny_mlx):
    table = compare_strategies(tiny_mlx, ["hello"], {"beam": DecodingConfig(strategy="beam")}, progress=False)
    assert "torch backend" in table.loc[0, "reply"]


def test_playground_generates(tiny_torch):
    form = playground(tiny_torch, prompt="hello")
    controls = form.children[1].children
    strategy, temperature, beams = controls[0], controls[1], controls[4]
    assert temperature.disabled and beams.disabled
    strategy.value = "beam"
    assert not beams.disabled and temperature.disabled
    shown = form.run()
    assert "beam x4" in shown and "tokens/s" in shown
    strategy.value = "sample"
    form.children[0].value = "a"
    controls[3].value = 0.05  # top-p
    assert "top-p=0.05" in form.run()
