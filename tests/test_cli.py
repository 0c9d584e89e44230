"""The command line: tables for good input, one clear line and exit status 2 for bad input."""

import json

import pytest

from helpers import run_cli


def test_help_lists_the_commands(monkeypatch, capsys):
    code, out, _ = run_cli(["--help"], monkeypatch, capsys)
    assert code == 0
    for command in ("tasks", "spaces", "extract"):
        assert command in out


def test_spaces_shows_sizes_and_counts(monkeypatch, capsys):
    code, out, _ = run_cli(["spaces", "--model", "shape:bert-tiny"], monkeypatch, capsys)
    assert code == 0
    assert "2,048" in out  # small space: 2 layers x 4 heads x 256 units
    assert "large" in out and "medium" in out


def test_extract_verify_writes_models(tmp_path, monkeypatch, capsys):
    out_dir = tmp_path / "models"
    args = ["extract", "--model", "shape:roberta-tiny", "--space", "medium", "--random", "3", "--out", str(out_dir)]
    code, out, err = run_cli([*args, "--verify"], monkeypatch, capsys)
    assert code == 0, err
    assert sorted(p.name for p in out_dir.iterdir()) == ["subnet-000", "subnet-001", "subnet-002"]
    assert "largest absolute logit difference" in out


def test_extract_single_config_from_a_file(tmp_path, monkeypatch, capsys):
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"num_layers": 1, "num_heads": 2, "num_units": 64}))
    code, _, err = run_cli(
        [
            "extract",
            "--model",
            "shape:bert-tiny",
            "--space",
            "small",
            "--config",
            str(config),
            "--out",
            str(tmp_path / "m"),
        ],
        monkeypatch,
        capsys,
    )
    assert code == 0, err
    meta = json.loads((tmp_path / "m" / "prunebench.json").read_text())
    assert meta["provenance"]["config"] == {"num_layers": 1, "num_heads": 2, "num_units": 64}
    assert len(meta["structure"]["layers"]) == 1


def _error(args, monkeypatch, capsys) -> str:
    code, _, err = run_cli(args, monkeypatch, capsys)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    return lines[0]


def test_bad_input_gets_one_line_errors(tmp_path, monkeypatch, capsys):
    base = ["extract", "--model", "shape:bert-tiny", "--out", str(tmp_path / "x")]
    assert "unknown search space 'tiny'" in _error([*base, "--space", "tiny", "--random", "1"], monkeypatch, capsys)
    assert "unknown model shape" in _error(
        ["extract", "--model", "shape:nope", "--space", "small", "--random", "1", "--out", str(tmp_path / "x")],
        monkeypatch,
        capsys,
    )
    assert "not valid JSON" in _error([*base, "--space", "small", "--config", "{num_layers"], monkeypatch, capsys)
    assert "outside space 'small'" in _error(
        [*base, "--space", "small", "--config", '{"num_layers": 9, "num_heads": 1, "num_units": 1}'],
        monkeypatch,
        capsys,
    )
    assert "exactly one of" in _error([*base, "--space", "small"], monkeypatch, capsys)
    assert not (tmp_path / "x").exists()


def test_existing_output_is_refused_without_overwrite(tmp_path, monkeypatch, capsys):
    target = tmp_path / "m"
    target.mkdir()
    (target / "keep.txt").write_text("mine")
    args = ["extract", "--model", "shape:bert-tiny", "--space", "layer", "--random", "1", "--out", str(tmp_path)]
    code, _, _ = run_cli(args, monkeypatch, capsys)
    assert code == 0  # subnet-000 beside m/ is a new target
    assert "--overwrite" in _error(
        [
            "extract",
            "--model",
            "shape:bert-tiny",
            "--space",
            "layer",
            "--config",
            '{"layer_0": 1, "layer_1": 0}',
            "--out",
            str(target),
        ],
        monkeypatch,
        capsys,
    )
    assert (target / "keep.txt").read_text() == "mine"


def test_every_option_default_is_its_config_field():
    """The CLI writes no default of its own: each option's default is the field of the config it fills."""
    import inspect
    from dataclasses import fields
    from pathlib import Path

    from prunebench import cli
    from prunebench import config as c

    TrainConfig, SearchConfig, ObjectiveSettings, EvalSettings = (
        c.TrainConfig,
        c.SearchConfig,
        c.ObjectiveSettings,
        c.EvalSettings,
    )
    ProfileConfig, CompareConfig, ExtractConfig, NasConfig = (
        c.ProfileConfig,
        c.CompareConfig,
        c.ExtractConfig,
        c.NasConfig,
    )

    def same_names(config) -> dict:
        return {f.name: getattr(config, f.name) for f in fields(config)}

    nas_train = NasConfig().train
    expected = {
        "spaces": {"model": TrainConfig.model},
        "extract": {"model": TrainConfig.model, **same_names(ExtractConfig)},
        "train": same_names(TrainConfig),
        "profile": {
            **same_names(ProfileConfig),
            "max_seconds": ProfileConfig.timing.max_seconds,
        },
        "search": {
            **same_names(SearchConfig),
            "time_budget": SearchConfig.time_budget_s,
            "objectives": ObjectiveSettings.names,
            "hardware": ObjectiveSettings.target,
            "seq_len": ObjectiveSettings.seq_len,
            "latency_batch": ObjectiveSettings.latency_batch,
            "variant": ObjectiveSettings.variant,
            "eval_batch_size": EvalSettings.batch_size,
            "workers": EvalSettings.workers,
            "device": EvalSettings.device,
        },
        "nas": {**same_names(nas_train), **same_names(NasConfig)},
        "compare": same_names(CompareConfig),
        "run": {"preset": c.DEFAULT_PRESET, "out": Path(c.DEFAULT_RUN_DIR)},
        "report": {"format": c.REPORT_FORMATS},
    }

    def as_config(default, field_value):
        if isinstance(field_value, tuple) and isinstance(default, str):  # "1,8,32" -> (1, 8, 32)
            parts = tuple(part.strip() for part in default.split(",") if part.strip())
            return tuple(type(field_value[0])(part) for part in parts) if field_value else parts
        if isinstance(field_value, tuple) and default is None:
            return ()  # an empty list option (--text-columns) is the empty tuple
        return default

    checked = {}
    for command in cli.app.registered_commands:
        name = command.name or command.callback.__name__
        fields_of = expected.get(name, {})
        for parameter in inspect.signature(command.callback).parameters.values():
            if parameter.name in fields_of and parameter.default is not inspect.Parameter.empty:
                field_value = fields_of[parameter.name]
                assert as_config(parameter.default, field_value) == field_value, (name, parameter.name)
                checked.setdefault(name, []).append(parameter.name)
    assert set(checked) == set(expected), set(expected) - set(checked)
    assert len(checked["train"]) >= 20 and len(checked["search"]) >= 12 and len(checked["profile"]) >= 8


def test_help_names_values_by_what_they_are_not_by_python_type(monkeypatch, capsys):
    from prunebench import cli

    names = [command.name or command.callback.__name__ for command in cli.app.registered_commands]
    for args in (["--help"], *([name, "--help"] for name in names)):
        code, out, _ = run_cli(args, monkeypatch, capsys)
        assert code == 0, args
        for python_type in ("<str>", "<int>", "<float>", "<bool>", "<path>", "list[", "None"):
            assert python_type not in out, (args, python_type)
        usage = next(line for line in out.splitlines() if "Usage:" in line)
        assert "prunebench" in usage and "{" not in usage, usage
    _, out, _ = run_cli(["profile", "--help"], monkeypatch, capsys)
    assert "[MODEL_DIR]" in out and "--out" in out and "DIR" in out
    words = " ".join(out.split())  # plain help wraps descriptions
    assert words.count("Give exactly one of --gpu and --device") == 2  # the required choice, said in the help
    _, out, _ = run_cli(["report", "--help"], monkeypatch, capsys)
    assert "RUNS..." in out and "[default: html,md]" in out


def test_help_at_80_columns_keeps_every_option_name_whole(monkeypatch, capsys):
    """Piped (as here) or on a narrow terminal, help is plain text: no line past 80 columns, no name cut."""
    from prunebench import cli

    monkeypatch.setenv("COLUMNS", "80")
    for name, command in cli._command().commands.items():
        monkeypatch.setattr("sys.argv", ["prunebench", name, "--help"])
        with pytest.raises(SystemExit):
            cli.main()
        out = capsys.readouterr().out
        assert max(len(line) for line in out.splitlines()) <= 80, name
        for param in command.params:
            for option in [*param.opts, *param.secondary_opts]:
                assert not option.startswith("--") or option in out, (name, option)
        if name == "profile":
            assert "--remeasure-unstable" in out and "…" not in out


def test_an_interrupt_ends_with_one_line_and_status_130(monkeypatch, capsys):
    # typer turns Ctrl-C into a silent exit 130; the user must still be told that finished work is kept
    def interrupted():
        raise KeyboardInterrupt

    monkeypatch.setattr("prunebench.tasks.list_tasks", interrupted)
    code, out, err = run_cli(["tasks"], monkeypatch, capsys)
    assert code == 130
    assert "interrupted: stopped; finished work is saved" in err and len(err.strip().splitlines()) == 1
