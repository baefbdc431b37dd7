"""python -m actor's flags: a bad one is a one-line error with exit status 2."""

from __future__ import annotations

import pytest

from actor.__main__ import parse_args


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--learner", "foo"], "--learner: 'foo' is not a ZeroMQ endpoint"),
        (["--learner", "tcp://10.0.0.5"], "needs tcp://HOST:PORT"),
        (["--num-envs", "0"], "--num-envs: must be >= 1"),
    ],
)
def test_bad_flags_exit_2_naming_the_flag(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as info:
        parse_args(argv)
    assert info.value.code == 2
    assert message in capsys.readouterr().err


def test_good_flags_parse() -> None:
    options = parse_args(["--learner", "tcp://10.0.0.5:5555", "--run-token", "ab12"])
    assert (options.learner, options.run_token) == ("tcp://10.0.0.5:5555", "ab12")
