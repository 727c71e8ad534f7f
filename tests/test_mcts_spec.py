"""Chapter 06's spec: the one place of the controller's default sizes and of a run folder's names, and a command
line that loads neither torch nor fastapi."""

from __future__ import annotations

import inspect
import subprocess
import sys
from pathlib import Path

from slmlab import mcts
from slmlab.mcts import consistency, core, evaluate, learning, lm_env, runs, selfplay, spec
from slmlab.mcts.controller import MCTSController
from slmlab.mcts.evaluate import EvalSettings
from slmlab.mcts.learning import train_network
from slmlab.mcts.lm_env import EnvConfig
from slmlab.mcts.macro import MacroState
from slmlab.mcts.network import NetworkConfig
from slmlab.mcts.runs import ChapterSettings, default_run_dir, long_run_dir
from slmlab.mcts.selfplay import SearchSettings, SelfPlayConfig, network_metrics_path, network_path
from slmlab.mcts.serve import CONTROLLERS, DEFAULT_BUDGET, ScriptedController, create_app
from slmlab.runlog import METRICS_FILE
from slmlab.settings import ARTIFACTS_ENV, artifacts_root
from slmlab.spec import shown


def _default(function, name: str):
    return inspect.signature(function).parameters[name].default


def test_every_settings_class_defaults_to_the_specs_sizes():
    budgets = [ChapterSettings().budget, EvalSettings().budget, SelfPlayConfig().budget, EnvConfig().budget]
    assert budgets + [MacroState().budget, DEFAULT_BUDGET] == [spec.BUDGET] * 6
    spans = [ChapterSettings().span_tokens, EvalSettings().span_tokens, SelfPlayConfig().span_tokens, EnvConfig().span_tokens]
    spans += [_default(MCTSController, "span_tokens"), _default(ScriptedController, "span_tokens")]
    assert spans == [spec.SPAN_TOKENS] * 6
    simulations = [ChapterSettings().simulations, EvalSettings().simulations, SelfPlayConfig().simulations]
    assert simulations + [SearchSettings().simulations, _default(MCTSController, "simulations")] == [spec.SIMULATIONS] * 5
    leaves = [ChapterSettings().parallel_leaves, EvalSettings().parallel_leaves, SelfPlayConfig().parallel_leaves]
    assert leaves + [SearchSettings().parallel_leaves] == [spec.PARALLEL_LEAVES] * 4
    assert ChapterSettings().best_of == EvalSettings().best_of == spec.BEST_OF
    assert _default(create_app, "max_budget") == spec.MAX_BUDGET and tuple(CONTROLLERS) == spec.CONTROLLERS


def test_the_chapters_settings_reach_self_play_and_the_evaluation_whole():
    settings = ChapterSettings()
    assert settings.selfplay() == SelfPlayConfig() and settings.evaluation() == EvalSettings()


def test_run_folders_follow_the_artifacts_rule(tmp_path, monkeypatch):
    monkeypatch.setenv(ARTIFACTS_ENV, str(tmp_path))
    for quick in (False, True):
        root = artifacts_root(quick)
        assert default_run_dir(quick=quick) == spec.run_dir(root) == root / "results" / "mcts"
        assert long_run_dir(quick=quick) == spec.long_run_dir(root) and spec.long_run_dir(root).is_dir()
        assert network_path(spec.run_dir(root)) == spec.network_file(root) == root / "results/mcts/network/network.pt"
        assert network_metrics_path(spec.run_dir(root)) == spec.network_dir(root) / METRICS_FILE
    assert shown(spec.network_file) == "results/mcts/network/network.pt"


def test_training_without_a_folder_is_not_told_the_working_directory():
    assert _default(train_network, "out_dir") is None  # it trains into spec.network_dir(artifacts_root())


def test_the_command_line_loads_neither_torch_nor_fastapi():
    code = "import sys, slmlab.mcts.cli; print(sorted(m for m in ('torch', 'fastapi', 'pandas') if m in sys.modules))"
    completed = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=Path(__file__).parent
    )
    assert completed.returncode == 0 and completed.stdout.strip() == "[]", completed.stderr


def test_the_chapters_settings_build_every_step_without_torch():
    code = (
        "import sys; from slmlab.mcts.spec import ChapterSettings; s = ChapterSettings.quick();"
        " s.selfplay().search(0).mcts(), s.selfplay().env_config(), s.training(0), s.evaluation();"
        " print(sorted(m for m in ('torch', 'numpy', 'pandas', 'fastapi') if m in sys.modules))"
    )
    completed = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=Path(__file__).parent
    )
    assert completed.returncode == 0 and completed.stdout.strip() == "[]", completed.stderr


def test_the_moved_settings_stay_importable_from_their_old_modules():
    old = [runs.ChapterSettings, selfplay.SelfPlayConfig, selfplay.SearchSettings, learning.TrainSettings, evaluate.EvalSettings]
    old += [lm_env.EnvConfig, core.MCTSConfig, consistency.ConsistencySettings]
    new = [spec.ChapterSettings, spec.SelfPlayConfig, spec.SearchSettings, spec.TrainSettings, spec.EvalSettings]
    new += [spec.EnvConfig, spec.MCTSConfig, spec.ConsistencySettings]
    assert old == new and learning.SCHEDULES == spec.SCHEDULES
    assert (mcts.ChapterSettings, mcts.EvalSettings, mcts.EnvConfig) == (spec.ChapterSettings, spec.EvalSettings, spec.EnvConfig)
    assert MacroState().max_resamples == EnvConfig().max_resamples == spec.MAX_RESAMPLES
    assert SelfPlayConfig().hidden == NetworkConfig(feature_dim=1).hidden == spec.HIDDEN
