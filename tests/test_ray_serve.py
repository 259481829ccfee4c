"""The entity server on Ray Serve: two replicas on a local Ray instance answer as `predict` does, and SIGTERM stops
them after the requests in flight are answered."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import pytest

ray = pytest.importorskip("ray")
pytest.importorskip("fastapi")

from conftest import local_ray_instance, ncbi_texts, same_entities  # noqa: E402
from ray import serve  # noqa: E402

from hf_layer_tokclf.base.code_consent import TRUST_ENV  # noqa: E402
from hf_layer_tokclf.running.loading import load_model  # noqa: E402
from hf_layer_tokclf.running.texts import predict_texts  # noqa: E402
from hf_layer_tokclf.server.app import ModelLoadError  # noqa: E402
from hf_layer_tokclf.server.ray_serve import APP_NAME, DEPLOYMENT, ray_application, replica_settings, run_ray_serve  # noqa: E402
from hf_layer_tokclf.server.settings import ServerSettings  # noqa: E402

REPLICAS = 2


@pytest.fixture(scope="module")
def local_ray():
    """A new Ray instance on this machine (`conftest.local_ray_instance`); Serve tries a replica's constructor once,
    not three times."""
    with local_ray_instance(RAY_SERVE_MAX_PER_REPLICA_RETRY_COUNT="1"):  # a replica that cannot load fails at once
        yield


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _post(url: str, inputs: str | list[str]) -> tuple[int, object]:
    request = urllib.request.Request(
        url, data=json.dumps({"inputs": inputs}).encode(), headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def _wait_ready(url: str, seconds: float = 180) -> None:
    """Until Serve says the application runs (every replica has loaded the model) and ``GET /health`` through its
    proxy answers 200."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if serve.status().applications[APP_NAME].status == "RUNNING":
                with urllib.request.urlopen(url + "health", timeout=5) as response:
                    if response.status == 200:
                        return
        except (KeyError, OSError):
            pass
        time.sleep(0.5)
    raise TimeoutError(f"{url} not ready in {seconds} s")


def test_replicas_get_the_drivers_consent_and_no_gpu_they_were_not_given(monkeypatch):
    settings = ServerSettings(model="some/model")
    monkeypatch.setenv(TRUST_ENV, "1")  # the person's consent, where the driver runs
    given = replica_settings(settings, num_gpus=0)
    assert (given.trust_remote_code, given.device) == (True, "cpu")
    monkeypatch.delenv(TRUST_ENV)
    assert replica_settings(settings, num_gpus=1) == ServerSettings(model="some/model", trust_remote_code=False)
    with pytest.raises(ValueError, match="replicas must be at least 1, not 0"):
        ray_application(settings, replicas=0)


def _drive(url: str, texts: list[str], long: list[str]) -> dict[str, object]:
    """What a client sees of the server at ``url``, once ready: Serve's replica states, `InferenceClient`'s answer
    for ``texts[0]``, 48 concurrent single texts and lists of 4; then 6 requests of the ``long`` texts, SIGTERM sent
    to this process while they are in flight, and their answers with the time each came (and the signal's)."""
    from huggingface_hub import InferenceClient

    seen: dict[str, object] = {}
    _wait_ready(url)
    seen["status"] = serve.status().applications[APP_NAME].deployments[DEPLOYMENT].replica_states
    seen["hub"] = InferenceClient(base_url=url).token_classification(texts[0])
    with ThreadPoolExecutor(16) as pool:
        seen["answers"] = list(pool.map(lambda i: _post(url, texts[i % len(texts)]), range(48)))
        seen["lists"] = list(pool.map(lambda i: _post(url, texts[i : i + 4]), range(0, len(texts), 4)))
        in_flight = [pool.submit(lambda: (*_post(url, long), time.monotonic())) for _ in range(6)]
        time.sleep(0.2)  # sent and routed to the replicas, which take seconds to answer them all
        seen["signalled"] = time.monotonic()
        os.kill(os.getpid(), signal.SIGTERM)
        seen["drained"] = [future.result() for future in in_flight]
    return seen


def test_two_replicas_answer_as_predict_and_sigterm_drains(local_ray, trained, monkeypatch):
    """`run_ray_serve` blocks in this (the main) thread while another sends requests through Serve's proxy, then
    SIGTERM with requests in flight: every one is answered, and the application is gone afterwards."""
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)  # the client talks to loopback only
    model_dir, _ = trained
    texts = ncbi_texts(24)
    long = [" ".join(texts[i : i + 6]) for i in range(16)]  # ~150 words each: 16 per request, seconds to answer
    loaded = load_model(model_dir)
    expected, expected_long = list(predict_texts(*loaded, texts)), list(predict_texts(*loaded, long))
    assert sum(map(len, expected)) > 0  # the trained model finds diseases in these sentences
    port = _free_port()
    url = f"http://127.0.0.1:{port}/"
    seen: dict[str, object] = {}

    def client() -> None:
        try:
            seen.update(_drive(url, texts, long))
        except BaseException as error:  # said by the main thread, which SIGTERM stops waiting
            seen["error"] = error
            os.kill(os.getpid(), signal.SIGTERM)

    thread = threading.Thread(target=client)
    thread.start()
    run_ray_serve(ServerSettings(model=str(model_dir)), port=port, replicas=REPLICAS, num_cpus=0.5)
    thread.join(60)
    assert "error" not in seen, seen.get("error")
    assert seen["status"] == {"RUNNING": REPLICAS}
    hub = [{"entity_group": e.entity_group, "score": e.score, "word": e.word, "start": e.start, "end": e.end}
           for e in seen["hub"]]  # fmt: skip
    assert same_entities(hub, expected[0])
    for i, (status, got) in enumerate(seen["answers"]):
        assert status == 200 and same_entities(got, expected[i % len(texts)]), (i, got)
    for i, (status, got) in enumerate(seen["lists"]):
        assert status == 200 and len(got) == 4 and all(map(same_entities, got, expected[4 * i : 4 * i + 4])), got
    for status, got, _ in seen["drained"]:
        assert status == 200 and len(got) == len(expected_long) and all(map(same_entities, got, expected_long)), got
    assert max(done for *_, done in seen["drained"]) > seen["signalled"]  # some were answered after SIGTERM
    assert APP_NAME not in serve.status().applications


def test_a_model_no_replica_can_load_is_a_load_error_and_leaves_nothing(local_ray, trained, tmp_path):
    """The folder passes the checks made before Ray (its config is there), its weights do not load: `run_ray_serve`
    raises the single-process server's `ModelLoadError` with the replica's reason, and deletes the application."""
    broken = tmp_path / "broken"
    shutil.copytree(trained[0], broken)
    (broken / "model.safetensors").write_bytes(b"not weights")
    with pytest.raises(ModelLoadError, match=f"{broken} could not load on Ray Serve: .*safetensors"):
        run_ray_serve(ServerSettings(model=str(broken)), port=_free_port())
    assert APP_NAME not in serve.status().applications


def test_serve_engine_ray_runs_ray_serve_with_its_options(tiny_dir, monkeypatch, capsys):
    """``serve --engine ray``: the options reach `run_ray_serve` (replaced here: no Ray starts); a model no replica
    could load is one line and status 1, as with the local engine."""
    import hf_layer_tokclf.server.ray_serve as ray_serve
    from hf_layer_tokclf.cli.main import main

    calls = []
    monkeypatch.setattr(ray_serve, "run_ray_serve", lambda settings, **options: calls.append((settings, options)))
    argv = ["serve", str(tiny_dir), "--engine", "ray", "--port", "8123", "--max-wait-ms", "2"]
    ray_options = ["--replicas", "3", "--ray-address", "auto", "--ray-num-cpus", "1.5", "--ray-num-gpus", "0.5"]
    assert main([*argv, *ray_options]) == 0
    [(settings, options)] = calls
    assert (settings.model, settings.batching.max_wait_ms) == (str(tiny_dir), 2.0)
    assert options == {
        "host": "127.0.0.1", "port": 8123, "replicas": 3, "address": "auto", "num_cpus": 1.5, "num_gpus": 0.5
    }  # fmt: skip

    def failing(settings: ServerSettings, **options: object) -> None:
        raise ModelLoadError(f"{settings.model} could not load on Ray Serve: OSError: no weights")

    monkeypatch.setattr(ray_serve, "run_ray_serve", failing)
    assert main(argv) == 1
    assert capsys.readouterr().err.strip().endswith("could not load on Ray Serve: OSError: no weights")
