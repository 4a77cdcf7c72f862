"""The crash report's agent end to end, through the broker, for each version pair: a real
livekit-server (in a network namespace), two publishers that speak in turns with voices of their
own pitch, and a livekit-agents worker whose job runs in a forkserver process: the report's
`AgentSession()` with an `Agent(instructions=...)`, a real Silero VAD and local STT/LLM/TTS
stand-ins, so every turn is answered with a tone and transcriptions (tests/e2e/scenario.py).

Pairs (client/python/pyproject.toml's e2e-* extras, one virtualenv each from
scripts/python-venvs.sh): the report's (livekit 1.1.5, livekit-agents 1.5.2, Python 3.10) and the
newest (livekit-agents 1.8.9 with the livekit it resolves).

Skips, with the reason, when a pair's virtualenv, the server binary or network namespaces are not
available; with LKB_E2E_REQUIRE=1 (set by .ci/run) those are failures instead.
"""
from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

from conftest import REPO
from e2e_drivers import e2e_python, require_e2e, run_driver
# tests/e2e/, on the path since e2e_drivers' import
from signals import LEVEL, PUBLISHERS as PITCH, REPLY_HZ, REPLY_SECONDS, REPLY_TEXT

SECONDS = 24  # the job listens this long: 4 turns of 6 s (signals.BURST_S + PAUSE_S)
PAIRS = ["report", "newest"]
REPORTS = REPO / "build" / "e2e"


def pinned(python: Path, pair: str) -> dict[str, str]:
    """The versions the pair's extra pins, from the metadata installed in its virtualenv."""
    code = "import importlib.metadata as m, json; print(json.dumps(m.requires('livekit-ffi-broker')))"
    requires = json.loads(subprocess.run([str(python), "-c", code], capture_output=True, text=True, check=True).stdout)
    pins = (re.fullmatch(rf'([\w-]+)==([\w.]+); extra == "e2e-{pair}"', r) for r in requires)
    return {m[1]: m[2] for m in pins if m}


def near(hz: float, target: float, tolerance: float) -> bool:
    return abs(hz - target) <= tolerance * target


def named_pitch(transcript: str) -> float:  # standins.transcript_for's text
    found = re.fullmatch(r"a voice at (\d+) hertz", transcript)
    assert found, transcript
    return float(found[1])


def check_track(track: dict, sent: dict) -> None:
    """What the job received of one publisher: every 10 ms frame, its voice intact."""
    who, pitch = track["identity"], PITCH[track["identity"]]
    assert track["frames"] >= SECONDS * 100 * 0.97, (who, track["frames"])
    assert track["samples"] >= SECONDS * 48000 * 0.97, (who, track["samples"])
    assert track["first_frame_s"] < 1.0 and track["last_frame_s"] > SECONDS - 1.0, (who, track["first_frame_s"], track["last_frame_s"])
    windows = track["windows"]
    assert len(windows) >= SECONDS - 1, (who, len(windows))
    # Every second with 0.3 s of voice or more has this publisher's pitch (its voice glides 4%
    # each side; a shorter stretch is too short to tell), and no second is louder than its
    # loudest second sent: another stream mixed in would show in either.
    voiced = [w for w in windows if w["audible_s"] >= 0.3]
    assert voiced and all(near(w["pitch_hz"], pitch, 0.05) for w in voiced), (who, windows)
    assert all(w["rms"] <= 1.25 * sent["loudest_second_rms_sent"] for w in windows), (who, windows)
    # The voice's share of the time arrives: on a loaded 2-core machine a moment may drop out
    # (concealed by silence), so 80% of what was sent.
    assert track["audible_fraction"] >= 0.8 * sent["audible_fraction_sent"], (who, track["audible_fraction"], sent)


def names_pitch_of(transcript: str) -> str | None:
    """The publisher whose pitch `transcript` names, if any."""
    heard = named_pitch(transcript)
    return next((who for who, pitch in PITCH.items() if near(heard, pitch, 0.05)), None)


def check_voice(voice: dict) -> int:
    """The session heard each publisher, transcribed its pitch, and answered it in full; returns
    how many full answers it gave. An answer the next turn interrupted (the agent was late) ends
    early: its text is a part of REPLY_TEXT. When the agent runs late, speech it buffered from one
    publisher is transcribed after the session has moved on to the other, and the agents' RoomIO
    credits it to the new one: so every transcript must name a publisher's pitch, and each
    publisher have a turn that names its own and was answered in full."""
    assert voice["errors"] == [], voice["errors"]
    assert all(names_pitch_of(t["transcript"]) for t in voice["turns"]), voice["turns"]
    replies = [(t, r["text"]) for t in voice["turns"] for r in t.get("replies", [])]
    assert all(text and REPLY_TEXT.startswith(text) for _, text in replies), replies
    answered = {t["identity"] for t, text in replies if text == REPLY_TEXT and names_pitch_of(t["transcript"]) == t["identity"]}
    assert answered == set(PITCH), voice["turns"]
    return sum(1 for _, text in replies if text == REPLY_TEXT)


def check_listener(identity: str, record: dict, track_sid: str, agent_replies: int) -> None:
    """What a publisher received from the agent: its reply audio at REPLY_HZ, for every full
    reply; the transcription of its own turn and of the agent's replies, as lk.transcription
    streams."""
    audio = record["agent_audio"]
    assert audio["hz"] is not None and abs(audio["hz"] - REPLY_HZ) <= 2, (identity, audio)
    assert audio["audible_s"] >= 0.8 * REPLY_SECONDS * agent_replies, (identity, audio, agent_replies)
    assert audio["rms"] <= 1.25 * LEVEL / 2**0.5, (identity, audio)  # the sine's RMS, with margin
    final = [s for s in record["transcription_streams"] if s["attributes"].get("lk.transcription_final") == "true"]
    agent_texts = [s["text"] for s in final if s["from"].startswith("agent-")]
    assert agent_texts.count(REPLY_TEXT) >= agent_replies, (identity, agent_texts, agent_replies)
    own = [s["text"] for s in final if s["attributes"].get("lk.transcribed_track_id") == track_sid]
    assert any(names_pitch_of(t) == identity for t in own), (identity, own)  # see check_voice


@pytest.mark.parametrize("pair", PAIRS)
def test_report_agent_voice_turn_in_forkserver_job_through_the_broker(pair, broker, tmp_dir):
    python = e2e_python(pair)
    require_e2e(python)
    result = run_driver("scenario.py", "--workdir", str(tmp_dir / "run"), "--broker", broker.address,
                        "--seconds", str(SECONDS), timeout=SECONDS + 300, python=python)
    REPORTS.mkdir(parents=True, exist_ok=True)
    (REPORTS / f"{pair}.json").write_text(json.dumps(result, indent=1))
    print(f"E2E {pair} {json.dumps(result['summary'])}")
    summary = json.dumps({k: v for k, v in result.items() if k not in ("job", "publishers")})[:3000]
    assert not result["hung"] and "failed" not in result, summary

    job = result["job"]
    assert "error" not in job and "crashed" not in job, job
    pins = pinned(python, pair)
    assert job["versions"] == {name: pins[name] for name in ("livekit", "livekit-agents")}, (job["versions"], pins)
    # The job ran in a process the forkserver started, routed through the broker, with no
    # liblivekit_ffi of its own.
    assert "from multiprocessing.forkserver import main" in job["parent_cmdline"], job["parent_cmdline"]
    assert not job["native_mapped_at_start"] and not job["native_mapped_at_end"]
    session = job["broker_session_mid_read"]
    assert session["active"] and session["sessions"] == 1 and session["owned_handles"] > 0, session

    publishers = result["publishers"]
    assert sorted(t["identity"] for t in job["tracks"]) == sorted(PITCH)
    for track in job["tracks"]:
        check_track(track, publishers[track["identity"]])

    replies = check_voice(job["voice"])
    for identity, record in publishers.items():
        check_listener(identity, record, result["published"][identity], replies)

    # No process ended by a signal: publishers, the worker, every job process (reported by the
    # worker's pool: they are the forkserver's children), what was re-parented to the driver
    # (the forkserver), the server.
    for identity, record in publishers.items():
        assert record.get("exitcode") == 0 and record["frames_sent"] > SECONDS * 100, (identity, record)
    assert result["worker"].get("exitcode") == 0, result["worker"]
    closed = {e["pid"]: e["exitcode"] for e in result["job_processes"]}
    assert closed.get(job["pid"]) == 0, result["job_processes"]
    assert all(code == 0 for code in closed.values()), result["job_processes"]
    # The forkserver is always among the orphans: the worker's main process does not wait for it.
    assert result["orphans"] and all(o.get("exitcode") == 0 for o in result["orphans"]), result["orphans"]
    assert result["left_running"] == [], result["left_running"]
    assert result["server"].get("exitcode") == 0, result["server"]

    # After the job ended the broker held nothing of its process; at the end nothing at all.
    after_job = result["broker_after_job"]
    assert after_job["job_sessions"] == [], after_job
    assert after_job["owned_handles"] == sum(s["owned_handles"] for s in after_job["sessions"]), after_job
    # A publisher holds its room, participants, track and streams (about ten handles), not one per
    # data stream it was sent: livekit 1.1.5 never reads nor drops the library's stream readers, and
    # without the broker's drop-unread-stream-readers bridge held 108 after four voice turns.
    assert all(s["owned_handles"] <= 30 for s in after_job["sessions"]), after_job
    assert result["broker_at_end"]["owned_handles"] == 0 and result["broker_at_end"]["sessions"] == [], result["broker_at_end"]
    assert broker.process.poll() is None, "the broker died"
