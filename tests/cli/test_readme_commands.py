"""Every command shown in the README's "Using it" section (and the study section's commands),
run as written against a live stack (an API + a worker), as a user would: `cttv2` from the
project's virtual environment on PATH, CTTV2_URL / CTTV2_TOKEN set, in a scratch working
directory that holds the files the examples name. Python blocks run as scripts with the same
environment. A line that exits non-zero fails the test, naming its README line.

What the test changes, all of it listed here: the lines in SKIP are not run; the README's
placeholders (PLACEHOLDERS) are replaced by real ids; the example specs in TINY_FILES are
replaced in the scratch directory by tiny specs of the same kind (the real ones train for
minutes to hours); EXTRA_FILES are files the README names but the repository does not have.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from tests.support.specs import TINY_CTTV2, TINY_FP, spec
from tests.support.stack import ROOT, wait_for_job

README = ROOT / "README.md"
# The README sections whose code blocks are run: "Using it" up to the next "## " heading, and
# the study section, which holds `cttv2 sweep report ID --csv FILE --png FILE`.
SECTIONS = ("## Using it", "## The study in one request")
SHELL_LANGS = {"bash", "sh", "shell", "console"}

# Lines not run, by pattern, each with the reason.
SKIP = [
    (r"^cttv2 (serve|worker)\b", "starts a server or worker: the live stack runs them"),
    (r"^make demo\b", "starts its own stack and trains for minutes"),
    (r"^\.venv/bin/python scripts/study_cpu\.py\b", "runs a whole CPU study on its own stack: an hour and more"),
    (r"^docker( compose|-compose)\b", "needs Docker: tests/deploy covers the compose file"),
    (r"^pip install\b", "changes the environment: the test runs the project's .venv"),
    (r"_CTTV2_COMPLETE=(zsh|fish)_source", "a zsh / fish startup line: the test runs lines in bash"),
]

# README placeholder -> the id it stands for (replaced in a command, not in its comment). "job",
# "other_job", "sweep": made (and run to the end) by the `ids` fixture before the README's
# lines; the others: the id in the output of the latest README command that printed one
# (CAPTURES: `cttv2 sweep submit`, `cttv2 weights upload`).
PLACEHOLDERS = {"42": "job", "41": "other_job", "7": "sweep", "ID": "submitted_sweep", "3": "weights"}
CAPTURES = {"submitted_sweep": r"submitted sweep (\d+)", "weights": r"uploaded weights (\d+)"}

TINY_SWEEP = {
    "name": "readme-sweep",
    "base": spec(TINY_FP, name="readme-sweep"),
    "grid": {"training.lr": [0.003]},
    "seeds": [1],
    "baseline": False,
}
TINY_FILES = {
    "examples/demo-job.yaml": spec(TINY_CTTV2, name="readme-demo-job"),
    "examples/demo-sweep.yaml": TINY_SWEEP,
    "examples/study-pretrain.yaml": spec(TINY_FP, name="readme-study-pretrain"),
    "examples/study-sweep.yaml": TINY_SWEEP,
}


def pretrained_weights(path: Path) -> None:
    """`cttv2 weights upload imagenet.safetensors --arch swin_tiny_patch4_window7_224`: a state
    dict of that architecture (random values: the worker checks the names and shapes)."""
    from safetensors.torch import save_file

    from cttv2_engine.models import build_model

    model = build_model("swin_tiny_patch4_window7_224", None, num_classes=10)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, path)


# name -> YAML content, or a function that writes the file
EXTRA_FILES = {"my-reram.yaml": {"family": "ReRamSB"}, "imagenet.safetensors": pretrained_weights}
# Files the README's commands write, checked (when a command still names them) after the run:
# exit 0 alone does not show it.
OUTPUTS = ("jobs.csv", "weights.safetensors", "report.png", "mlflow.db", "study.csv", "study.png")

BIN = ROOT / ".venv" / "bin" if (ROOT / ".venv" / "bin" / "cttv2").exists() else Path(sys.executable).parent
LINE_TIMEOUT_S = 180


@dataclass
class Block:
    lang: str
    line: int  # README line number of the block's first line (after the fence)
    lines: list[str]


def readme_blocks() -> list[Block]:
    blocks: list[Block] = []
    text = README.read_text().splitlines()
    inside, lang, start, body = False, "", 0, []
    section = None
    for n, raw in enumerate(text, 1):
        if not inside and raw.startswith("## "):
            section = raw.strip() if raw.strip() in SECTIONS else None
        if not raw.startswith("```"):
            if inside:
                body.append(raw)
            continue
        if inside:
            if section is not None:
                blocks.append(Block(lang, start, body))
            inside = False
        else:
            inside, lang, start, body = True, raw[3:].strip().lower(), n + 1, []
    return blocks


def shell_commands(block: Block) -> list[tuple[int, str]]:
    """(README line, command) for each command of a shell block: `\\` continuations joined; in a
    console block only the `$ ` lines."""
    out: list[tuple[int, str]] = []
    pending: tuple[int, str] | None = None
    for n, raw in enumerate(block.lines, block.line):
        line = raw.strip()
        if pending is not None:
            line = pending[1] + " " + line
            n = pending[0]
            pending = None
        elif block.lang == "console":
            if not line.startswith("$ "):
                continue
            line = line[2:]
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending = (n, line[:-1].rstrip())
            continue
        out.append((n, line))
    return out


def skip_reason(command: str) -> str | None:
    return next((why for pattern, why in SKIP if re.search(pattern, command)), None)


def strip_comment(command: str) -> str:
    """The command without its trailing `# ...` (a # that starts a word outside quotes)."""
    quote, escaped = "", False
    for i, ch in enumerate(command):
        if escaped:
            escaped = False
        elif ch == "\\" and quote != "'":
            escaped = True
        elif quote:
            quote = "" if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch == "#" and (i == 0 or command[i - 1].isspace()):
            return command[:i].rstrip()
    return command


def substitute(command: str, ids: dict[str, int]) -> str:
    def one(m: re.Match) -> str:
        key = PLACEHOLDERS[m.group(0)]
        if key not in ids:
            raise LookupError(f"placeholder {m.group(0)} ({key}) has no value yet")
        return str(ids[key])

    words = "|".join(map(re.escape, PLACEHOLDERS))
    return re.sub(rf"(?<![\w.:/-])(?:{words})(?![\w.:/-])", one, command)


def test_the_readme_has_the_blocks_this_test_runs():
    blocks = readme_blocks()
    shell = [c for b in blocks if b.lang in SHELL_LANGS for _, c in shell_commands(b)]
    assert sum(b.lang == "python" for b in blocks) >= 1, "no python block under 'Using it'"
    for expected in ("cttv2 submit ", "cttv2 sweep report ", "--csv"):
        assert any(expected in c for c in shell), f"no README command with {expected!r}"


@pytest.fixture(scope="module")
def token(live) -> str:
    return live.create_user()


@pytest.fixture(scope="module")
def api(live, token):
    with live.client(token) as client:
        yield client
        # leave nothing running on the shared stack: cancel this user's unfinished jobs
        for status in ("queued", "running"):
            for job in client.get("/v1/jobs", params={"status": status, "limit": 100}).json()["items"]:
                client.post(f"/v1/jobs/{job['id']}/cancel")


@pytest.fixture(scope="module")
def ids(api) -> dict[str, int]:
    """Two finished jobs and a finished sweep for the README's placeholders."""
    job_ids = [api.post("/v1/jobs", json=spec(TINY_FP, name=f"readme-{n}")).json()["id"] for n in (1, 2)]
    sweep_id = api.post("/v1/sweeps", json=TINY_SWEEP).json()["id"]
    for job_id in job_ids:
        assert wait_for_job(api, job_id, timeout=180)["status"] == "succeeded"
    deadline = time.monotonic() + 180
    while (sweep := api.get(f"/v1/sweeps/{sweep_id}").json())["status"] != "succeeded":
        assert time.monotonic() < deadline and sweep["status"] in ("queued", "running"), sweep
        time.sleep(0.3)
    return {"job": job_ids[0], "other_job": job_ids[1], "sweep": sweep_id}


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("readme-work")
    shutil.copytree(ROOT / "examples", d / "examples")
    for name, body in {**TINY_FILES, **EXTRA_FILES}.items():
        if callable(body):
            body(d / name)
        else:
            (d / name).write_text(yaml.safe_dump(body, sort_keys=False))
    return d


def test_every_readme_command_runs(live, token, ids, workdir):
    env = {k: v for k, v in os.environ.items() if not k.startswith("CTTV2_")}
    env.update(
        PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}",
        CTTV2_URL=live.url,
        CTTV2_TOKEN=token,
        XDG_CONFIG_HOME=str(workdir / ".config"),  # `cttv2 login` saves here
        COLUMNS="200",
    )
    stdin = f"{live.url}\n{token}\n"  # `cttv2 login` asks for the URL and the token
    ids = dict(ids)
    failures, ran, skipped = [], 0, []

    def run(where: str, shown: str, argv: list[str]) -> str:
        nonlocal ran
        ran += 1
        try:
            res = subprocess.run(
                argv,
                cwd=workdir,
                env=env,
                input=stdin,
                capture_output=True,
                text=True,
                timeout=LINE_TIMEOUT_S,
                start_new_session=True,  # no terminal: hidden prompts read stdin
            )
        except subprocess.TimeoutExpired:
            failures.append(f"{where}: `{shown}` did not end within {LINE_TIMEOUT_S} s")
            return ""
        if res.returncode != 0:
            failures.append(
                f"{where}: `{shown}` exited {res.returncode}\n--- stdout:\n{res.stdout[-3000:]}"
                f"\n--- stderr:\n{res.stderr[-3000:]}"
            )
        return res.stdout + res.stderr

    for block in readme_blocks():
        if block.lang == "python":
            script = workdir / f"readme_line_{block.line}.py"
            script.write_text("\n".join(block.lines) + "\n")
            run(f"README.md:{block.line} (python block)", "python " + script.name, [str(BIN / "python"), script.name])
            continue
        if block.lang not in SHELL_LANGS:
            continue
        for n, command in shell_commands(block):
            if reason := skip_reason(command):
                skipped.append(f"README.md:{n} {command} ({reason})")
                continue
            try:
                actual = substitute(strip_comment(command), ids)
            except LookupError as exc:
                failures.append(f"README.md:{n}: `{command}`: {exc}")
                continue
            shown = command if actual == strip_comment(command) else f"{command}` run as `{actual}"
            output = run(f"README.md:{n}", shown, ["bash", "-o", "pipefail", "-c", actual])
            for key, pattern in CAPTURES.items():
                if m := re.search(pattern, output):
                    ids[key] = int(m.group(1))

    print(f"ran {ran} README commands; skipped:", *skipped, sep="\n  ")
    assert ran >= 10, f"only {ran} README commands found"
    assert not failures, f"{len(failures)} README example(s) failed:\n\n" + "\n\n".join(failures)
    named = "\n".join(c for b in readme_blocks() if b.lang in SHELL_LANGS for _, c in shell_commands(b))
    missing = [name for name in OUTPUTS if name in named and not (workdir / name).is_file()]
    assert not missing, f"the README's commands did not write {missing}"
