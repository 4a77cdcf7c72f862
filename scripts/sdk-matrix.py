#!/usr/bin/env python3
"""The livekit Python SDK version matrix: each release of client/python/sdk_matrix.json through the
broker, on its own Python, in its own virtualenv.

    python3 scripts/sdk-matrix.py            # every row; writes the table into README.md
    python3 scripts/sdk-matrix.py --ci       # the rows whose ci is "matrix" (npm test runs this)
    python3 scripts/sdk-matrix.py 1.1.5      # one release (or several)

Per row: build/sdk-matrix/livekit-<v>-py<p>/venv with the Python client (editable), its test
extra with livekit pinned to <v> instead (made once, from the pip cache, again only when the
requirements change), then pytest over the table's core (the room scenario against the real
livekit-server included), JUnit report and log beside the venv. Prints a markdown table (and the
failures' reasons); exits 1 when any row failed. Needs the broker built (`npm run build`).
Standard library only.
"""
from __future__ import annotations

import argparse
import datetime
import glob
import json
import os
import re
import shutil
import subprocess
import sys
import time
import tomllib
import xml.etree.ElementTree as ET
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
TABLE = REPO / "client" / "python" / "sdk_matrix.json"
PYPROJECT = REPO / "client" / "python" / "pyproject.toml"
OUT = REPO / "build" / "sdk-matrix"
README = REPO / "README.md"
BEGIN, END = "<!-- sdk-matrix:begin -->", "<!-- sdk-matrix:end -->"
ROW_TIMEOUT_S = 900


def say(*parts: object) -> None:
    print("[sdk-matrix]", *parts, file=sys.stderr, flush=True)


def test_extra() -> list[str]:
    """The client's test extra without its livekit pin (the row pins its own)."""
    extra = tomllib.loads(PYPROJECT.read_text())["project"]["optional-dependencies"]["test"]
    return [r for r in extra if not re.match(r"livekit\s*[=<>!~]", r)]


def pinned_livekit() -> str:
    extra = tomllib.loads(PYPROJECT.read_text())["project"]["optional-dependencies"]["test"]
    return next(r.split("==", 1)[1] for r in extra if re.match(r"livekit\s*==", r))


def interpreter(version: str) -> str:
    """pyenv's Python <version>, else python<version> on PATH: the first that runs (a pyenv shim
    of a version that is not selected does not)."""
    root = os.environ.get("PYENV_ROOT", os.path.expanduser("~/.pyenv"))
    candidates = sorted(glob.glob(f"{root}/versions/{version}.*/bin/python{version}")) + [shutil.which(f"python{version}")]
    for candidate in filter(None, candidates):
        if subprocess.run([candidate, "-c", "import venv"], capture_output=True).returncode == 0:
            return candidate
    raise SystemExit(f"sdk-matrix: no Python {version} (pyenv or python{version} on PATH): install it, or change the row's python in {TABLE}")


def ensure_venv(row: dict, workdir: Path) -> Path:
    venv = workdir / "venv"
    python = venv / "bin" / "python"
    requirements = ["-e", str(REPO / "client" / "python"), *test_extra(), f"livekit=={row['livekit']}"]
    stamp = workdir / "requirements.json"
    if python.exists() and stamp.exists() and json.loads(stamp.read_text()) == requirements:
        return python
    shutil.rmtree(venv, ignore_errors=True)
    workdir.mkdir(parents=True, exist_ok=True)
    subprocess.run([interpreter(row["python"]), "-m", "venv", str(venv)], check=True)
    subprocess.run([str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", *requirements], check=True)
    stamp.write_text(json.dumps(requirements))
    return python


def library_version(python: Path) -> str:
    """The liblivekit_ffi version the SDK wheel ships (its start-up log line names it)."""
    site = subprocess.run([str(python), "-c", "import livekit.rtc, os; print(os.path.dirname(livekit.rtc.__file__))"],
                          capture_output=True, text=True, env={"PATH": "/usr/bin:/bin"})
    lib = Path(site.stdout.strip()) / "resources" / "liblivekit_ffi.so"
    found = re.search(rb"initializing ffi server v([0-9][0-9.]*[0-9])", lib.read_bytes()) if lib.exists() else None
    return found.group(1).decode() if found else "?"


def broker_library() -> str:
    return json.loads((REPO / "package.json").read_text())["dependencies"]["@livekit/rtc-ffi-bindings"]


def first_line(text: str) -> str:
    for line in (text or "").splitlines():
        line = line.strip()
        if line.startswith("E "):
            return line[1:].strip()[:300]
    return (text or "").strip().splitlines()[0][:300] if (text or "").strip() else ""


_ERROR_LINE = re.compile(r"^(\w+\.)*\w*(Error|Exception|Exit)\b.*:|^assert |^(alice|bob)[: ]|never|did not|lost|received no")
_BOILERPLATE = re.compile(r"exited -?\d+$|^AssertionError: *$|^Exception ignored in")


def error_lines(text: str, limit: int = 5) -> list[str]:
    """The distinct lines of a pytest failure that say what went wrong (exceptions, the scenario's
    own problem lines), without tracebacks and the "script exited 1" wrapper."""
    out: list[str] = []
    for line in text.splitlines():
        if not line.startswith("E "):
            continue
        line = line[1:].strip()
        if _ERROR_LINE.search(line) and not _BOILERPLATE.search(line) and line[:200] not in out:
            out.append(line[:200])
    return out[:limit]


def read_junit(path: Path) -> tuple[list[dict], dict | None]:
    cases, room = [], None
    if not path.exists():
        return cases, room
    for case in ET.parse(path).iter("testcase"):
        name = f"{case.get('file') or case.get('classname')}::{case.get('name')}"
        outcome, reason = "passed", ""
        for kind in ("failure", "error", "skipped"):
            node = case.find(kind)
            if node is not None:
                outcome = "skipped" if kind == "skipped" else "failed"
                reason = "; ".join(error_lines(node.text or "")) or first_line(node.get("message") or "")
        for prop in case.iter("property"):
            if prop.get("name") == "room":
                room = json.loads(prop.get("value"))
        cases.append({"test": name, "outcome": outcome, "reason": reason})
    return cases, room


def bridges(room: dict | None) -> str:
    """The bridges the broker's Info reported for the peers' sessions ("n/a": a broker without them)."""
    if not room:
        return "?"
    seen = set()
    for view in room.get("sessions", {}).values():
        for session in view:
            if "sdk" not in session and "bridges" not in session:
                seen.add("n/a")
                continue
            got = ", ".join(f"`{b}`" for b in session.get("bridges", [])) or "none"
            seen.add(f"{got} (Hello: {session.get('sdk', '?')} {session.get('sdk_version', '?')})")
    return "; ".join(sorted(seen)) or "?"


def room_summary(room: dict | None, case: dict | None) -> str:
    if case is None:
        return "not run"
    if case["outcome"] != "passed":
        return f"**{case['outcome']}**"
    audio = room["peers"]["bob"]["audio_in"]
    peaks = sorted({round(w["peak_hz"]) for w in audio["windows"] if w["rms"] >= 0.05})
    return f"passed: {audio['frames']} frames in {audio['seconds_read']} s at {'/'.join(map(str, peaks))} Hz, data both ways, text + byte stream"


def run_row(row: dict, core: list[str]) -> dict:
    name = f"livekit-{row['livekit']}-py{row['python']}"
    workdir = OUT / name
    started = time.monotonic()
    say(f"{name}: virtualenv")
    python = ensure_venv(row, workdir)
    venv_s = time.monotonic() - started
    junit, log = workdir / "junit.xml", workdir / "pytest.log"
    junit.unlink(missing_ok=True)
    say(f"{name}: pytest ({len(core)} entries), log {log.relative_to(REPO)}")
    with open(log, "w") as out:
        try:
            code = subprocess.run([str(python), "-m", "pytest", *core, "-q", "-p", "no:cacheprovider", f"--junitxml={junit}"],
                                  cwd=REPO, stdout=out, stderr=subprocess.STDOUT, timeout=ROW_TIMEOUT_S).returncode
        except subprocess.TimeoutExpired:
            code = -1
            out.write(f"\nsdk-matrix: pytest did not finish within {ROW_TIMEOUT_S} s\n")
    cases, room = read_junit(junit)
    room_case = next((c for c in cases if "test_room_livekit" in c["test"]), None)
    suite = [c for c in cases if c is not room_case]
    passed = sum(c["outcome"] == "passed" for c in suite)
    result = {
        **row, "name": name, "ffi": library_version(python), "pytest_exit": code, "cases": cases, "room": room,
        "suite": f"{passed}/{len(suite)} passed" if suite else "not run",
        "room_result": room_summary(room, room_case), "bridges": bridges(room),
        "ok": code == 0 and bool(cases) and all(c["outcome"] == "passed" for c in cases),
        "venv_s": round(venv_s, 1), "seconds": round(time.monotonic() - started, 1),
    }
    say(f"{name}: {'ok' if result['ok'] else 'FAILED'} in {result['seconds']} s (virtualenv {result['venv_s']} s)")
    return result


def table(results: list[dict]) -> str:
    ci = {"matrix": "yes (`--ci`)", "pytest": "yes (pytest run)", "no": "no"}
    lines = [
        "| livekit | Python | its own liblivekit_ffi | CI | core suite | room scenario (real server) | bridge (Info) |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in results:
        suite = r["suite"] if not any(c["outcome"] != "passed" for c in r["cases"] if "test_room_livekit" not in c["test"]) else f"**{r['suite']}**"
        lines.append(f"| {r['livekit']} | {r['python']} | {r['ffi']} | {ci[r['ci']]} | {suite} | {r['room_result']} | {r['bridges']} |")
    return "\n".join(lines)


def failures(results: list[dict]) -> str:
    out = []
    for r in results:
        bad = [c for c in r["cases"] if c["outcome"] != "passed"]
        if not bad and r["ok"]:
            continue
        out.append(f"- **livekit {r['livekit']}** (`build/sdk-matrix/{r['name']}/pytest.log`):")
        if not bad:
            out.append(f"  - pytest exited {r['pytest_exit']} (see the log)")
        for c in bad:
            out.append(f"  - `{c['test'].split('/')[-1]}` {c['outcome']}: {c['reason']}")
        if r["room"] and r["room"].get("broker_warnings"):
            out.append("  - broker warnings: " + "; ".join(f"`{w}`" for w in r["room"]["broker_warnings"][:8]))
    return "\n".join(out)


def write_readme(block: str) -> None:
    text = README.read_text()
    start, end = text.find(BEGIN), text.find(END)
    if start < 0 or end < start:
        raise SystemExit(f"sdk-matrix: README.md has no {BEGIN} ... {END} markers")
    README.write_text(text[: start + len(BEGIN)] + "\n" + block + "\n" + text[end:])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("versions", nargs="*", help="livekit versions of the table to run (default: all)")
    parser.add_argument("--ci", action="store_true", help='only the rows whose ci is "matrix"')
    args = parser.parse_args()
    spec = json.loads(TABLE.read_text())
    rows = spec["versions"]
    covered = [r["livekit"] for r in rows if r["ci"] == "pytest"]
    if covered != [pinned_livekit()]:
        raise SystemExit(f'sdk-matrix: the row with ci "pytest" must be the livekit the test extra pins ({pinned_livekit()}), not {covered}')
    if args.ci:
        rows = [r for r in rows if r["ci"] == "matrix"]
    if args.versions:
        unknown = set(args.versions) - {r["livekit"] for r in rows}
        if unknown:
            raise SystemExit(f"sdk-matrix: {sorted(unknown)} not in {TABLE.relative_to(REPO)} (or not a CI row)")
        rows = [r for r in rows if r["livekit"] in args.versions]
    if not (REPO / "dist" / "broker" / "cli.js").exists():
        raise SystemExit("sdk-matrix: dist/broker/cli.js is missing: run `npm run build` first")
    core = [c["test"] for c in spec["core"]]
    started = time.monotonic()
    results = [run_row(row, core) for row in rows]
    (OUT / "last.json").write_text(json.dumps(results, indent=1))
    command = "python3 scripts/sdk-matrix.py" + (" --ci" if args.ci else "") + "".join(f" {v}" for v in args.versions)
    block = "\n\n".join(part for part in (
        f"Last run: {datetime.date.today().isoformat()}, `{command}`, {round(time.monotonic() - started)} s "
        f"(the broker on its pinned liblivekit_ffi {broker_library()}).",
        table(results), failures(results)) if part)
    print(block, flush=True)
    if not args.ci and not args.versions:
        write_readme(block)
        say("README.md updated")
    return 0 if all(r["ok"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
