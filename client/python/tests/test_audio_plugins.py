"""LiveKit's noise cancellation (livekit-plugins-noise-cancellation, the real package) as the agent
templates use it, through the broker: the import loads the plugin from the broker's own copy of the
package (build/audio-plugins, made by scripts/install-audio-plugins.sh, a directory apart from this
venv's site-packages), filtered streams of a remote track on a real livekit-server get their audio,
and a broker without that release refuses the import with an error that names it.

On a local server the plugin turns itself off ("not authorized for this connection": it
authorizes against LiveKit Cloud), in-process too; the stream then goes on unfiltered.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from conftest import HERE, REPO, SCENARIOS, livekit_server_binary, run_scenario, scenario_env, start_broker

sys.path.insert(0, str(HERE / "e2e"))

from harness import LiveKitServer  # noqa: E402

PLUGINS = REPO / "build" / "audio-plugins"
PACKAGE, VERSION = "livekit-plugins-noise-cancellation", "0.3.2"
COPY = PLUGINS / PACKAGE / VERSION / "livekit" / "plugins" / "noise_cancellation" / "resources"
SECONDS = 3


def plugin_broker(tmp: Path, *extra: str):
    assert COPY.is_dir(), f"{COPY} is missing: scripts/python-venvs.sh installs the broker's copy there"
    return start_broker(tmp, "--allow-audio-plugins", str(PLUGINS), *extra)


def mapped_files(broker) -> list[dict]:
    return [json.loads(line) for line in broker.lines if "mapped to the broker's copies" in line]


def test_import_loads_the_plugin_from_the_brokers_copy(tmp_dir):
    broker = plugin_broker(tmp_dir)
    try:
        named = run_scenario("audio_plugins.py", "--import-only", address=broker.address)
        worker_plugin = Path(named["plugin_path"])
        assert worker_plugin.is_file() and not worker_plugin.resolve().is_relative_to(PLUGINS.resolve()), worker_plugin
        # The library (in the broker process) mapped the broker's copy, never the worker's file.
        maps = {line.split()[-1] for line in open(f"/proc/{broker.process.pid}/maps") if "nc_plugin" in line}
        assert maps == {str((COPY / worker_plugin.name).resolve())}, maps
        [load] = mapped_files(broker)
        assert load["request"] == "LoadAudioFilterPluginRequest"
        assert load["mapped"] == {str(worker_plugin): str((COPY / worker_plugin.name).resolve())}, load
    finally:
        broker.stop()


def import_error(address: str) -> str:
    proc = subprocess.run([sys.executable, str(SCENARIOS / "audio_plugins.py"), "--import-only"],
                          env=scenario_env(address), capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0, proc.stdout
    return proc.stderr.strip().splitlines()[-1]


def test_a_broker_without_the_release_refuses_the_import_naming_it(tmp_dir):
    install = f'AUDIO_PLUGINS="{PACKAGE}=={VERSION}"'
    broker = start_broker(tmp_dir)
    try:
        error = import_error(broker.address)
    finally:
        broker.stop()
    assert "PERMISSION_DENIED" in error and f"needs {PACKAGE} {VERSION}" in error, error
    assert "without --allow-audio-plugins DIR" in error and install in error, error

    # Another release of the package: still refused, and the error says what the broker holds.
    other = tmp_dir / "plugins"
    (other / PACKAGE / "0.3.1" / "livekit_plugins_noise_cancellation-0.3.1.dist-info").mkdir(parents=True)
    broker = start_broker(tmp_dir, "--allow-audio-plugins", str(other))
    try:
        error = import_error(broker.address)
    finally:
        broker.stop()
    assert f"needs {PACKAGE} {VERSION}" in error and f"holds {PACKAGE}==0.3.1" in error and install in error, error


def test_filtered_streams_of_a_remote_track_on_a_real_server(tmp_dir):
    binary = livekit_server_binary()
    broker = plugin_broker(tmp_dir)
    try:
        with LiveKitServer(binary, tmp_dir) as server:
            # The import and the streams in one process, then in a child forked after the import.
            runs = [run_scenario("audio_plugins.py", "--url", server.url, "--seconds", str(SECONDS), *fork, address=broker.address)
                    for fork in ([], ["--fork"])]
        for result in runs:
            # Audio flows through both filtered streams: 10 ms frames, the publisher's 440 Hz.
            for stream in ("from_track", "from_participant"):
                assert result[stream]["frames"] >= SECONDS * 100 * 0.9, result
                assert abs(result[stream]["peak_hz"] - 440) <= 2 and result[stream]["rms"] > 1000, result
        # The library found the plugin the import registered and gave it each of the 4 streams
        # (the forked child's too, whose own session never loaded it): the plugin (the broker's
        # copy) asked the server to authorize the connection, which a local server does not, so
        # the library ran each stream unfiltered.
        log = "\n".join(broker.lines)
        assert log.count("failed to initialize the audio filter") == 4, broker.log()
        assert "noise cancellation is not authorized for this connection" in log, broker.log()
        # The model path the worker named was replaced by the broker's copy in every request.
        model = Path(runs[0]["model_path"])
        streams = [(m["request"], m["mapped"]) for m in mapped_files(broker) if m["request"] != "LoadAudioFilterPluginRequest"]
        assert sorted(streams) == sorted((kind, {str(model): str((COPY / model.name).resolve())}) for kind in ("NewAudioStreamRequest", "AudioStreamFromParticipantRequest") for _ in runs), streams
        assert broker.info().owned_handles == 0
    finally:
        broker.stop()
