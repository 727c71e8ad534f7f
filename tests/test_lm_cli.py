"""``slmlab lm crawl | clean | tokenizer | train | sample | eval`` end to end on tiny inputs, and the options that
come from the config dataclasses."""

from __future__ import annotations

import dataclasses
import functools
import http.server
import json
import threading

import pytest

from slmlab.cli import build_parser, main
from slmlab.testing import stdlib_text_corpus
from slmlab.tinylm.cli import train_config
from slmlab.tinylm.model import ModelConfig
from slmlab.tinylm.training import LMTrainConfig, config_arguments

PAGE = "<html><head><title>{title}</title></head><body><article><h1>{title}</h1><p>{text}</p>{links}</article></body></html>"
PROSE = (
    "A tiny language model learns the statistics of its corpus one window at a time, and the curve of its "
    "validation loss tells whether it generalises or only memorises the pages it was shown. "
)


@pytest.fixture
def site(tmp_path):
    root = tmp_path / "site"
    root.mkdir()
    (root / "robots.txt").write_text("User-agent: *\nDisallow: /private/\n")
    links = '<a href="/a.html">a</a> <a href="/private/secret.html">secret</a>'
    (root / "index.html").write_text(PAGE.format(title="Home", text=PROSE * 3, links=links))
    (root / "a.html").write_text(PAGE.format(title="Page A", text=PROSE * 2 + "Another page.", links=""))
    (root / "private").mkdir()
    (root / "private" / "secret.html").write_text(PAGE.format(title="Secret", text=PROSE, links=""))
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()


def test_crawl_then_clean_from_the_command_line(site, tmp_path, capsys):
    corpus = tmp_path / "corpus"
    assert (
        main(["lm", "crawl", site, "--out", str(corpus), "--max-pages", "5", "--depth", "2", "--delay", "0", "--no-progress"])
        == 0
    )
    printed = capsys.readouterr().out
    assert "2 pages" in printed and "robots 1" in printed
    manifest = json.loads((corpus / "manifest.json").read_text())
    assert sorted(page["url"].rsplit("/", 1)[1] for page in manifest["pages"]) == ["", "a.html"]
    assert main(["lm", "clean", str(corpus), "--out", str(tmp_path / "clean"), "--min-chars", "10"]) == 0
    printed = capsys.readouterr().out
    assert "near" in printed and "cleaned corpus" in printed
    assert (tmp_path / "clean-report.csv").is_file()


def test_tokenizer_train_sample_eval_from_the_command_line(tmp_path, capsys):
    corpus = stdlib_text_corpus(tmp_path / "corpus", "[d-f]*.py", 10)
    data, run = tmp_path / "data", tmp_path / "run"
    assert main(["lm", "tokenizer", str(corpus), "--out", str(data), "--vocab-size", "300", "--max-bytes", "10000000"]) == 0
    printed = capsys.readouterr().out
    assert "first merges" in printed and json.loads(printed.splitlines()[0])["vocab_size"] == 300
    assert main(["lm", "train", "--quick", "--data", str(data), "--run-dir", str(run), "--steps", "4", "--no-tensorboard"]) == 0
    metrics = json.loads((run / "training_metrics.json").read_text())
    assert metrics["steps"] == 4 and metrics["config"]["model"]["hidden_size"] == 64
    assert (
        main(["lm", "sample", "def ", "--model", str(run), "--strategy", "beam", "--num-beams", "2", "--max-new-tokens", "6"])
        == 0
    )
    assert "beam x2" in capsys.readouterr().out
    assert (
        main(
            [
                "lm",
                "eval",
                "--model",
                str(run),
                "--data",
                str(data),
                "--out",
                str(tmp_path / "res" / "eval.json"),
                "--samples",
                "4",
            ]
        )
        == 0
    )
    report = json.loads((tmp_path / "res" / "eval.json").read_text())
    assert report["model"]["bits_per_byte"] > 0 and report["bigram"]["bits_per_byte"] > 0
    assert (tmp_path / "res" / "continuations.csv").is_file()


def test_config_arguments_reproduce_the_config_through_the_parser(monkeypatch):
    monkeypatch.setenv("SLMLAB_QUICK", "0")  # the full recipe is the base the options change
    config = dataclasses.replace(
        LMTrainConfig(),
        steps=7,
        learning_rate=1e-3,
        sampling="sequential",
        model=ModelConfig(hidden_size=64, heads=4, kv_heads=2, tie_embeddings=False),
    )
    args = build_parser().parse_args(["lm", "train", *config_arguments(config)])
    assert train_config(args) == config


def test_options_left_out_keep_the_dataclass_defaults(monkeypatch):
    monkeypatch.setenv("SLMLAB_QUICK", "0")
    args = build_parser().parse_args(["lm", "train", "--steps", "3"])
    assert train_config(args) == dataclasses.replace(LMTrainConfig(), steps=3)


def test_a_missing_token_folder_is_a_clear_error(tmp_path, capsys):
    assert main(["lm", "train", "--data", str(tmp_path / "nothing"), "--run-dir", str(tmp_path / "run")]) == 2
    assert "not a prepared corpus" in capsys.readouterr().err
