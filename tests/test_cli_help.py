"""``--help`` of every CLI: each default stated once, plain text (no reStructuredText
back-ticks), and the choice flags list the values their implementing modules accept."""

from __future__ import annotations

import argparse
import re

import pytest

from unet_keras.cli import convert, evaluate, predict, serve, train
from unet_keras.cli.common import HelpFormatter, description
from unet_keras.config import TrainConfig
from unet_keras.data import FORMATS
from unet_keras.distribute import STRATEGIES
from unet_keras.losses import LOSSES, get_loss
from unet_keras.optimizers import OPTIMIZERS
from unet_keras.training import make_optimizer

CLIS = {"train.py": train.main, "evaluate.py": evaluate.main, "unet-predict": predict.main,
        "unet-convert": convert.main, "unet-serve": serve.main}


def help_text(main, capsys, monkeypatch) -> str:
    monkeypatch.setenv("COLUMNS", "80")
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    return capsys.readouterr().out


def option_entries(text: str) -> list[str]:
    """Each option's block of the help (its flags and help text, joined into one line)."""
    body = text.split("\noptions:\n", 1)[1]
    entries: list[str] = []
    for line in body.splitlines():
        if re.match(r"^  -", line):
            entries.append(line.strip())
        elif line.strip() and entries:
            entries[-1] += " " + line.strip()
    return entries


@pytest.mark.parametrize("prog", sorted(CLIS))
def test_help_states_each_default_once_in_plain_text(prog, capsys, monkeypatch):
    text = help_text(CLIS[prog], capsys, monkeypatch)
    assert f"usage: {prog}" in text
    assert "``" not in text
    assert "(default: None)" not in text
    entries = option_entries(text)
    assert len(entries) >= 4
    for entry in entries:
        # a help that already says what its default is gets no second, generated one
        assert not re.search(r"default.*\(default: [^)]*\)$", entry, re.IGNORECASE), entry
        assert "(default: False)" not in entry or "--no-" in entry, entry


def test_choice_flags_list_the_implemented_values(capsys, monkeypatch):
    text = help_text(train.main, capsys, monkeypatch)
    for flag, values in {"--loss": tuple(LOSSES), "--optimizer": OPTIMIZERS,
                         "--strategy": STRATEGIES, "--format": FORMATS}.items():
        assert f"{flag} {{{','.join(values)}}}" in text, flag
    assert len(LOSSES) >= 2 and len(OPTIMIZERS) >= 2 and len(STRATEGIES) >= 4
    assert "evaluate.py" and "--format {" + ",".join(FORMATS) + "}" in help_text(
        evaluate.main, capsys, monkeypatch)


@pytest.mark.parametrize("flag", ["--loss", "--optimizer", "--strategy"])
def test_train_refuses_a_value_outside_the_choices(flag, capsys):
    with pytest.raises(SystemExit) as exit_info:
        train.resolve_config([flag, "no-such-choice"])
    assert exit_info.value.code == 2
    assert "invalid choice" in capsys.readouterr().err


def test_every_listed_choice_is_accepted_by_the_config_and_builds():
    """The CLI lists the implementing modules' names; TrainConfig (which keeps its own list)
    must accept each of them, and each must build."""
    for name in LOSSES:
        assert TrainConfig(loss=name).loss == name
        assert get_loss(name).name
    for name in OPTIMIZERS:
        make_optimizer(TrainConfig(optimizer=name))
    for name in STRATEGIES:
        assert TrainConfig(strategy=name).strategy == name
    with pytest.raises(ValueError, match="unknown loss"):
        get_loss("no-such-loss")


def test_train_quiet_flag_is_not_a_config_field():
    cfg, quiet = train.resolve(["--quiet", "--output", "x"])
    assert quiet is True and cfg.output == "x"
    assert train.resolve(["--output", "x"])[1] is False


def test_formatter_adds_a_default_only_where_it_says_something(capsys):
    p = argparse.ArgumentParser(prog="t", formatter_class=HelpFormatter)
    p.add_argument("--stated", help="a thing (default: the one stored in the file)")
    p.add_argument("--unset", help="an optional path")
    p.add_argument("--size", type=int, default=7, help="a size")
    p.add_argument("--switch", action="store_true", help="turn it on")
    p.add_argument("--flag", action=argparse.BooleanOptionalAction, default=True,
                   help="on or off")
    text = " ".join(p.format_help().split())
    assert "(default: the one stored in the file)" in text
    assert "(default: None)" not in text and "(default: False)" not in text
    assert "a size (default: 7)" in text
    assert "on or off (default: True)" in text


def test_description_drops_double_back_ticks():
    assert description("``unet-x``: writes ``<name>_mask.png``\n``--output``") == (
        "unet-x: writes <name>_mask.png\n--output")
