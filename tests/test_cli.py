"""The regimelab command on new bars: infer, now, and the errors a user can make."""

from __future__ import annotations

import contextlib
import importlib.metadata
import io
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import regimelab
from regimelab.cli import main
from regimelab.store import PredictionStore
from regimelab.synth import make_market, write_market
from tests import core_install
from tests.stages.test_model_stages import outputs, scaled  # noqa: F401  (fixtures)

MODELS = ("hmm", "dssm", "jump")


@pytest.fixture(autouse=True)
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """Each test's predictions go to its own SQLite file (subprocesses inherit it)."""
    url = f"sqlite:///{tmp_path / 'predictions.db'}"
    monkeypatch.setenv("REGIMELAB_STORE", url)
    return url


@pytest.fixture(scope="module")
def unseen(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A synthetic market the models were not trained on, with an outage."""
    path = tmp_path_factory.mktemp("unseen") / "new_1h.csv"
    write_market(make_market(700, n_regimes=3, n_gaps=1, random_state=21), path)
    return path


def infer(model: Path, bars: Path, out: Path, *extra: str) -> pd.DataFrame:
    assert main(["infer", "--model", str(model), "--input", str(bars), "--output", str(out),
                 *extra]) == 0
    return pd.read_parquet(out)


@pytest.mark.parametrize("name", MODELS)
def test_infer_on_the_training_bars_reproduces_the_filtered_regimes(
        scaled: Path, outputs: Path, name: str, tmp_path: Path) -> None:  # noqa: F811
    """The observations are rebuilt from the manifest alone: on the training market the
    filtered posteriors of the train split (which starts the series) are the stage's."""
    out = infer(outputs / "models" / name, scaled / "m.csv", tmp_path / "r.parquet")
    stage = pd.read_parquet(outputs / f"data/regimes/{name}.parquet")
    train = stage.loc[stage["split"] == "train"].reset_index(drop=True)
    k = sum(c.startswith("p_filter_") for c in stage.columns)
    assert len(out) == len(pd.read_parquet(scaled / "features.parquet"))
    head = out.iloc[:len(train)].reset_index(drop=True)
    pd.testing.assert_series_equal(head["timestamp"], train["timestamp"])
    columns = [f"p_filter_{i}" for i in range(k)]
    np.testing.assert_allclose(head[columns].to_numpy(), train[columns].to_numpy(), rtol=0,
                               atol=1e-9)
    np.testing.assert_array_equal(out["state_filtered"],
                                  out[columns].to_numpy().argmax(axis=1))


@pytest.mark.parametrize("name", MODELS)
def test_infer_and_now_on_an_unseen_market(outputs: Path, unseen: Path, name: str,  # noqa: F811
                                           tmp_path: Path, capsys: pytest.CaptureFixture
                                           ) -> None:
    out = infer(outputs / "models" / name, unseen, tmp_path / "r.parquet", "--smoothed")
    k = sum(c.startswith("p_filter_") for c in out.columns)
    assert [c for c in out.columns if c.startswith("p_smooth_")] == [
        f"p_smooth_{i}" for i in range(k)]
    for kind in ("filter", "smooth"):
        p = out[[f"p_{kind}_{i}" for i in range(k)]].to_numpy()
        np.testing.assert_allclose(p.sum(axis=1), 1.0, rtol=0, atol=1e-10)
    assert out["segment"].nunique() == 2  # the outage cuts the series

    assert main(["now", "--model", str(outputs / "models" / name), "--input", str(unseen),
                 "--json"]) == 0
    (row,) = json.loads(capsys.readouterr().out)
    last = out.iloc[-1]
    assert row["timestamp"] == last["timestamp"].isoformat()
    assert row["state"] == last["state_filtered"]
    # The latest bar from a lookback equals the batch row at the same timestamp.
    np.testing.assert_allclose(row["probabilities"],
                               [last[f"p_filter_{i}"] for i in range(k)], rtol=0, atol=1e-12)
    assert row["bars"] == (out["segment"] == last["segment"]).sum()
    # Every answer carries the regimes' names from the model folder.
    names = json.loads((outputs / "models" / name / "manifest.json").read_text())[
        "regime_names"]
    assert row["regime"] == names[row["state"]] == last["regime_filtered"]
    np.testing.assert_array_equal(out["regime"], np.asarray(names)[out["state"]])


def test_now_prints_one_line_per_symbol(outputs: Path, unseen: Path,  # noqa: F811
                                        capsys: pytest.CaptureFixture) -> None:
    assert main(["now", "--model", str(outputs / "models/hmm"), "--input", str(unseen),
                 "--lookback", "300"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("SYN ") and " state " in lines[0]
    # The chain's next-regime forecasts, on the same line.
    assert " | in 1 bar(s): chain 0:" in lines[0] and " | in 24 bar(s): chain 0:" in lines[0]


@pytest.mark.parametrize("name", MODELS)
def test_now_leaves_out_a_bar_that_has_not_closed(outputs: Path, unseen: Path, name: str,  # noqa: F811
                                                  tmp_path: Path,
                                                  capsys: pytest.CaptureFixture) -> None:
    """At the last bar's open it is still forming: the answer is the bar before it."""
    out = infer(outputs / "models" / name, unseen, tmp_path / "r.parquet")
    last_open = out["timestamp"].iloc[-1]
    assert main(["now", "--model", str(outputs / "models" / name), "--input", str(unseen),
                 "--as-of", last_open.isoformat(), "--json"]) == 0
    (row,) = json.loads(capsys.readouterr().out)
    previous = out.iloc[-2]
    assert row["timestamp"] == previous["timestamp"].isoformat() and row["unclosed"] == 1
    k = len(row["probabilities"])
    np.testing.assert_allclose(row["probabilities"],
                               [previous[f"p_filter_{i}"] for i in range(k)], rtol=0, atol=1e-12)
    # One hour later it has closed.
    closes = (last_open + pd.Timedelta(hours=1)).isoformat()
    assert main(["now", "--model", str(outputs / "models" / name), "--input", str(unseen),
                 "--as-of", closes, "--json"]) == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert row["timestamp"] == last_open.isoformat() and row["unclosed"] == 0


def test_now_refuses_a_last_bar_without_its_features(outputs: Path, unseen: Path,  # noqa: F811
                                                     tmp_path: Path) -> None:
    """A bar right after an outage has no full window: no answer rather than an older one."""
    bars = pd.read_csv(unseen)
    late = bars.tail(1).assign(timestamp=(pd.to_datetime(bars["timestamp"].iloc[-1])
                                          + pd.Timedelta(hours=5)).isoformat())
    pd.concat([bars, late]).to_csv(tmp_path / "gap.csv", index=False)
    proc = run_cli("now", "--model", str(outputs / "models/hmm"), "--input",
                   str(tmp_path / "gap.csv"), "--no-store")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert "SYN: the last bar" in last and "has no log_return_1h" in last


@pytest.mark.parametrize("args, message", [
    (["--lookback", "0"], "--lookback: expected an integer >= 1"),
    (["--as-of", "yesterday-ish"], "--as-of 'yesterday-ish': not a timestamp"),
    (["--as-of", ""], "--as-of '': not a timestamp"),
    (["--as-of", "2000-01-01"], "no bar has closed by 2000-01-01T00:00:00+00:00"),
])
def test_now_mistakes_are_one_line(outputs: Path, unseen: Path, args: list[str],  # noqa: F811
                                   message: str) -> None:
    proc = run_cli("now", "--model", str(outputs / "models/hmm"), "--input", str(unseen),
                   "--no-store", *args)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert message in proc.stderr.strip().splitlines()[-1]


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "regimelab.cli", *args], capture_output=True,
                          text=True, check=False)


def test_bars_at_another_interval_are_refused(outputs: Path, tmp_path: Path) -> None:  # noqa: F811
    daily = make_market(200, n_regimes=2, freq="1D", random_state=1)
    write_market(daily, tmp_path / "daily.csv")
    proc = run_cli("infer", "--model", str(outputs / "models/hmm"), "--input",
                   str(tmp_path / "daily.csv"))
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1] == (
        f"error: {tmp_path / 'daily.csv'}: bars are 1d apart, but the model was trained on "
        "1h bars; resample the input or train on this timeframe")


@pytest.mark.parametrize("args, message", [
    (["--input", "missing.csv"], "missing.csv"),
    (["--input", "{bars}", "--output", "out.xlsx"], "--output out.xlsx: expected"),
])
def test_user_mistakes_are_one_line(outputs: Path, unseen: Path, args: list[str],  # noqa: F811
                                    message: str, tmp_path: Path) -> None:
    args = [a.replace("{bars}", str(unseen)) for a in args]
    proc = subprocess.run([sys.executable, "-m", "regimelab.cli", "infer", "--model",
                           str(outputs / "models/dssm"), *args], capture_output=True, text=True,
                          check=False, cwd=tmp_path)
    assert proc.returncode == 2
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and message in last and "Traceback" not in proc.stderr
    assert not (tmp_path / "out.xlsx").exists()


def test_a_folder_without_a_model_is_refused(tmp_path: Path, unseen: Path) -> None:
    proc = run_cli("now", "--model", str(tmp_path), "--input", str(unseen))
    assert proc.returncode == 2
    assert "not a model folder (no manifest.json)" in proc.stderr.strip().splitlines()[-1]


def test_drift_exits_0_on_the_training_market_and_1_on_a_wilder_one(
        scaled: Path, outputs: Path, tmp_path: Path) -> None:  # noqa: F811
    reference = str(scaled / "scaled/train.parquet")
    same = run_cli("drift", "--model", str(outputs / "models/hmm"), "--input",
                   str(scaled / "m.csv"), "--reference", reference, "--output",
                   str(tmp_path / "same.json"))
    assert same.returncode == 0, same.stderr
    assert json.loads((tmp_path / "same.json").read_text())["drift"] is False
    wild = make_market(900, n_regimes=3, random_state=4)
    for col in ("open", "high", "low", "close"):  # ten times the moves around the same path
        wild[col] = wild["close"].iloc[0] * (wild[col] / wild["close"].iloc[0]) ** 10
    write_market(wild, tmp_path / "wild.csv")
    proc = run_cli("drift", "--model", str(outputs / "models/hmm"), "--input",
                   str(tmp_path / "wild.csv"), "--reference", reference)
    assert proc.returncode == 1, proc.stderr
    report = json.loads(proc.stdout)
    assert report["drift"] is True and report["fit"]["ll_drop"] > 1.0
    assert report["fit"]["direction"] == "lower" and report["fit"]["ll_ks"] > 0.2
    assert "drift: per-bar log-likelihoods moved lower" in proc.stderr


def test_drift_of_a_model_without_a_likelihood_reads_features_and_regimes(
        scaled: Path, outputs: Path, tmp_path: Path) -> None:  # noqa: F811
    wild = make_market(900, n_regimes=3, random_state=4)
    for col in ("open", "high", "low", "close"):
        wild[col] = wild["close"].iloc[0] * (wild[col] / wild["close"].iloc[0]) ** 10
    write_market(wild, tmp_path / "wild.csv")
    proc = run_cli("drift", "--model", str(outputs / "models/jump"), "--input",
                   str(tmp_path / "wild.csv"), "--reference",
                   str(scaled / "scaled/train.parquet"))
    assert proc.returncode == 1, proc.stderr
    report = json.loads(proc.stdout)
    assert report["fit"] is None and report["drift"] is True
    assert any(": PSI " in b or ": KS " in b for b in report["breaches"])


def test_drift_without_the_reference_is_one_line(outputs: Path, unseen: Path,  # noqa: F811
                                                 tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "regimelab.cli", "drift", "--model",
                           str(outputs / "models/hmm"), "--input", str(unseen)],
                          capture_output=True, text=True, check=False, cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1].startswith(
        "error: --reference data/scaled/train.parquet: no such file")


def test_every_prediction_is_stored_and_read_back(outputs: Path, unseen: Path,  # noqa: F811
                                                  tmp_path: Path, store: str,
                                                  capsys: pytest.CaptureFixture) -> None:
    out = infer(outputs / "models/hmm", unseen, tmp_path / "r.parquet")
    assert main(["now", "--model", str(outputs / "models/dssm"), "--input", str(unseen)]) == 0
    assert main(["now", "--model", str(outputs / "models/dssm"), "--input", str(unseen),
                 "--no-store"]) == 0
    capsys.readouterr()
    assert main(["history", "--csv"]) == 0
    history = pd.read_csv(io.StringIO(capsys.readouterr().out))
    assert len(history) == len(out) + 1
    assert history["source"].value_counts().to_dict() == {"infer": len(out), "now": 1}
    inferred = history.loc[history["source"] == "infer"].reset_index(drop=True)
    np.testing.assert_array_equal(inferred["state"], out["state_filtered"])
    first = json.loads(inferred["probabilities"].iloc[0])
    k = sum(c.startswith("p_filter_") for c in out.columns)
    np.testing.assert_allclose(first, [out[f"p_filter_{i}"].iloc[0] for i in range(k)],
                               rtol=0, atol=1e-6)
    assert inferred["model_version"].nunique() == 1 and len(inferred["model_version"][0]) == 12
    assert main(["history", "--model", str(outputs / "models/dssm"), "--limit", "5"]) == 0
    assert "now" in capsys.readouterr().out


def test_now_from_a_short_lookback_is_close_to_the_whole_history(
        scaled: Path, outputs: Path, tmp_path: Path, capsys: pytest.CaptureFixture  # noqa: F811
) -> None:
    """The filter forgets its start: 200 bars give the whole run's answer."""
    out = infer(outputs / "models/hmm", scaled / "m.csv", tmp_path / "r.parquet")
    assert (out["segment"] == out["segment"].iloc[-1]).sum() > 400
    assert main(["now", "--model", str(outputs / "models/hmm"), "--input",
                 str(scaled / "m.csv"), "--lookback", "200", "--json"]) == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert row["bars"] == 200
    k = len(row["probabilities"])
    np.testing.assert_allclose(row["probabilities"],
                               [out[f"p_filter_{i}"].iloc[-1] for i in range(k)],
                               rtol=0, atol=1e-6)


def test_drift_refuses_a_reference_that_is_not_the_training_data(
        scaled: Path, outputs: Path, unseen: Path) -> None:  # noqa: F811
    proc = run_cli("drift", "--model", str(outputs / "models/hmm"), "--input", str(unseen),
                   "--reference", str(scaled / "features.parquet"))
    assert proc.returncode == 2
    assert "not the data" in proc.stderr.strip().splitlines()[-1]
    forced = run_cli("drift", "--model", str(outputs / "models/hmm"), "--input", str(unseen),
                     "--reference", str(scaled / "features.parquet"), "--force")
    assert forced.returncode in (0, 1) and "Traceback" not in forced.stderr


# The conventions of a command-line tool: version, python -m, verbosity, completion, and
# the server run by uvicorn's own command line.

def test_python_m_regimelab_prints_the_installed_version() -> None:
    proc = subprocess.run([sys.executable, "-m", "regimelab", "--version"],
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == f"regimelab {importlib.metadata.version('regimelab')}\n"


@pytest.mark.parametrize("before, after, info, debug", [
    ([], [], True, False),
    (["-v"], [], True, True),
    (["-q"], [], False, False),
    ([], ["-q"], False, False),  # after the command's name too
])
def test_v_and_q_set_what_is_logged(outputs: Path, unseen: Path, tmp_path: Path,  # noqa: F811
                                    before: list[str], after: list[str], info: bool,
                                    debug: bool) -> None:
    proc = subprocess.run([sys.executable, "-m", "regimelab", *before, "infer", "--model",
                           str(outputs / "models/hmm"), "--input", str(unseen), "--output",
                           str(tmp_path / "r.parquet"), "--no-store", *after],
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    assert ("INFO regimelab.cli: " in proc.stderr) is info
    # -v: which model answered, line by line.
    assert ("DEBUG regimelab.cli: " in proc.stderr and "gaussian_hmm model" in proc.stderr
            ) is debug


def test_bash_completes_commands_options_and_paths(tmp_path: Path) -> None:
    bash = shutil.which("bash")
    if bash is None:
        pytest.skip("no bash on this machine")
    script = subprocess.run([sys.executable, "-m", "regimelab", "--print-completion", "bash"],
                            capture_output=True, text=True, check=True).stdout
    (tmp_path / "completion.bash").write_text(script)
    (tmp_path / "models").mkdir()
    (tmp_path / "bars.csv").write_text("")

    def complete(*words: str) -> list[str]:
        line = " ".join(("regimelab", *words))
        proc = subprocess.run(
            [bash, "-c", f'source completion.bash; COMP_WORDS=({line}); '
                         f'COMP_CWORD={len(words)}; COMP_LINE="{line}"; '
                         'COMP_POINT=${#COMP_LINE}; _shtab_regimelab; '
                         'printf "%s\\n" "${COMPREPLY[@]}"'],
            capture_output=True, text=True, check=True, cwd=tmp_path)
        return proc.stdout.split()

    assert complete("in") == ["infer"]
    assert complete("serve", "--wo") == ["--workers"]
    assert complete("now", "--model", "mo") == ["models"]
    assert complete("infer", "--input", "ba") == ["bars.csv"]
    zsh = subprocess.run([sys.executable, "-m", "regimelab", "--print-completion", "zsh"],
                         capture_output=True, text=True, check=True).stdout
    assert zsh.startswith("#compdef regimelab") and "--no-access-log" in zsh


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def get(port: int, path: str) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


@contextlib.contextmanager
def server(command: list[str], port: int, log: Path, **env: str) -> Iterator[None]:
    """A server process until /health answers; stopped as Ctrl+C stops it. Its output
    goes to ``log`` (uvicorn writes its access log on stdout, the rest on stderr)."""
    with log.open("w") as out:
        proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT,
                                env={**os.environ, **env})
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if get(port, "/health")[0] == 200:
                    break
            except OSError:
                pass
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.25)
        yield
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_uvicorn_serves_the_app_factory_with_an_access_log(outputs: Path,  # noqa: F811
                                                           tmp_path: Path) -> None:
    port = free_port()
    command = [sys.executable, "-m", "uvicorn", "--factory", "regimelab.serve:create_app",
               "--port", str(port)]
    with server(command, port, tmp_path / "log", REGIMELAB_MODEL=str(outputs / "models/hmm"),
                REGIMELAB_NO_STORE="1"):
        status, health = get(port, "/health")
        assert status == 200 and health["model"] == "gaussian_hmm"
        assert get(port, "/nothing")[0] == 404
    log = (tmp_path / "log").read_text()
    assert '"GET /health HTTP/1.1" 200' in log and '"GET /nothing HTTP/1.1" 404' in log


def test_the_app_factory_without_a_model_is_one_line(tmp_path: Path) -> None:
    """uvicorn's start-up failure status (3), so its worker supervisor gives up rather
    than start the workers again and again."""
    env = {k: v for k, v in os.environ.items() if k != "REGIMELAB_MODEL"}
    proc = subprocess.run([sys.executable, "-m", "uvicorn", "--factory",
                           "regimelab.serve:create_app", "--port", str(free_port()),
                           "--workers", "2"], capture_output=True, text=True, check=False,
                          env=env, timeout=120)
    assert "Traceback" not in proc.stderr
    assert proc.stderr.count("error: $REGIMELAB_MODEL is not set; set it to a model folder") == 2
    assert "failed to start, stopping the parent process" in proc.stderr
    proc = subprocess.run([sys.executable, "-m", "uvicorn", "--factory",
                           "regimelab.serve:create_app", "--port", str(free_port())],
                          capture_output=True, text=True, check=False, env=env, timeout=120)
    assert proc.returncode == 3 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith("error: $REGIMELAB_MODEL is not set")


def test_serve_with_two_workers_shares_the_port_and_the_store(
        outputs: Path, recent_json: list[dict], tmp_path: Path, store: str) -> None:  # noqa: F811
    port = free_port()
    command = [sys.executable, "-m", "regimelab", "serve", "--model",
               str(outputs / "models/hmm"), "--port", str(port), "--workers", "2"]
    with server(command, port, tmp_path / "log"):
        request = urllib.request.Request(f"http://127.0.0.1:{port}/regime",
                                         data=json.dumps({"bars": recent_json}).encode(),
                                         headers={"Content-Type": "application/json"})
        for _ in range(4):
            with urllib.request.urlopen(request, timeout=20) as answer:
                assert answer.status == 200
    log = (tmp_path / "log").read_text()
    assert log.count("Started server process") == 2, log
    assert log.count('"POST /regime HTTP/1.1" 200') == 4
    # Both workers append to the store the parent process was given ($REGIMELAB_STORE).
    history = PredictionStore(store).history()
    assert len(history) == 4 and set(history["source"]) == {"serve"}


def test_serve_without_the_access_log(outputs: Path, tmp_path: Path) -> None:  # noqa: F811
    port = free_port()
    command = [sys.executable, "-m", "regimelab", "serve", "--model",
               str(outputs / "models/jump"), "--port", str(port), "--no-store",
               "--no-access-log"]
    with server(command, port, tmp_path / "log"):
        assert get(port, "/model")[0] == 200
    log = (tmp_path / "log").read_text()
    assert f"Uvicorn running on http://127.0.0.1:{port}" in log and "GET /" not in log


@pytest.fixture(scope="module")
def recent_json() -> list[dict]:
    bars = make_market(300, n_regimes=3, random_state=5)
    return [{"timestamp": ts.isoformat(), "open": o, "high": h, "low": lo, "close": c,
             "volume": v}
            for ts, o, h, lo, c, v in bars[["timestamp", "open", "high", "low", "close",
                                            "volume"]].itertuples(index=False)]


# An inference-only install (`pip install regimelab`, no pipeline extra), simulated: every
# installed module that pyproject's core dependencies do not bring is refused.

CORE_COMMANDS = """
import json, sys
from pathlib import Path

from regimelab.cli import main

models, bars, reference, out = map(Path, sys.argv[1:5])
for name in ("hmm", "dssm", "jump"):
    assert main(["infer", "--model", str(models / name), "--input", str(bars), "--output",
                 str(out / f"{name}.parquet")]) == 0
    assert main(["now", "--model", str(models / name), "--input", str(bars), "--json"]) == 0
assert main(["drift", "--model", str(models / "hmm"), "--input", str(bars), "--reference",
             str(reference), "--output", str(out / "drift.json")]) in (0, 1)
assert main(["history", "--csv"]) == 0
print(json.dumps(sorted(m for m in sys.modules if m.partition(".")[0] in
                        ("lightning", "optuna", "dvc", "dvclive", "matplotlib", "arch"))))
"""


def test_an_inference_only_install_infers_drifts_and_serves(
        scaled: Path, outputs: Path, unseen: Path, recent_json: list[dict],  # noqa: F811
        tmp_path: Path, store: str) -> None:
    env = core_install.environment()
    assert {"lightning", "optuna", "dvc", "matplotlib", "arch"} <= set(
        env[core_install.BLOCKED_ENV].split(","))
    (tmp_path / "core.py").write_text(CORE_COMMANDS)
    proc = subprocess.run([sys.executable, str(core_install.SCRIPT), str(tmp_path / "core.py"),
                           str(outputs / "models"), str(unseen),
                           str(scaled / "scaled/train.parquet"), str(tmp_path)],
                          capture_output=True, text=True, check=False, env=env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "[]"  # none of the pipeline was imported
    for name in MODELS:  # the same regimes as a full install's
        pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / f"{name}.parquet"),
                                      infer(outputs / "models" / name, unseen,
                                            tmp_path / "full.parquet", "--no-store"))
    main(["drift", "--model", str(outputs / "models/hmm"), "--input", str(unseen),
          "--reference", str(scaled / "scaled/train.parquet"), "--output",
          str(tmp_path / "full.json")])
    assert (json.loads((tmp_path / "drift.json").read_text())
            == json.loads((tmp_path / "full.json").read_text()))
    n_stored = len(PredictionStore(store).history())
    # `regimelab serve` (uvicorn on the app factory) answers and stores.
    port = free_port()
    command = [sys.executable, str(core_install.SCRIPT),
               str(Path(regimelab.__file__).with_name("__main__.py")), "serve",
               "--model", str(outputs / "models/dssm"), "--port", str(port)]
    with server(command, port, tmp_path / "log", **env):
        request = urllib.request.Request(f"http://127.0.0.1:{port}/regime",
                                         data=json.dumps({"bars": recent_json}).encode(),
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=20) as answer:
            assert answer.status == 200 and json.loads(answer.read())["model"] == "dssm"
    assert "Traceback" not in (tmp_path / "log").read_text()
    assert len(PredictionStore(store).history()) == n_stored + 1
