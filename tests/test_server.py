"""``hf-layer-tokclf serve``: the entity server answers Hugging Face's own client with predict's entities.

Most tests share one server, started as a user starts it (``python -m hf_layer_tokclf serve MODEL``) in a subprocess
on a free loopback port, on the trained MiniLM of conftest; the answers are compared with `texts.predict_texts` on
the same model and NCBI-disease test sentences. What needs a server of its own: a full queue and SIGTERM (one server,
tiny limits), a model that fails to load, the ONNX folder. The model's loading states and the multi-task model run
in this process (Starlette's TestClient), which costs no interpreter start.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import pytest
from conftest import REPO, assert_same_entities, ncbi_texts
from tampered import foreign_code_folder

from hf_layer_tokclf.running.loading import load_model
from hf_layer_tokclf.running.texts import predict_texts
from hf_layer_tokclf.server.settings import BatchSettings, ServerSettings

STARTUP_SECONDS = 300  # imports and the model load on a busy 2-core machine


TEXTS = ncbi_texts(200)


class Served:
    """A ``serve`` process: its URL once it printed its ready line, and what it wrote."""

    def __init__(self, model: Path, tmp_path: Path, *options: str) -> None:
        self.out, self.err = tmp_path / "stdout.txt", tmp_path / "stderr.txt"
        paths = [str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])]
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": os.pathsep.join(paths)}
        command = [sys.executable, "-m", "hf_layer_tokclf", "serve", str(model), "--port", "0", *options]
        with self.out.open("w") as out, self.err.open("w") as err:
            self.process = subprocess.Popen(command, stdout=out, stderr=err, env=env)
        self.url = ""

    def ready(self) -> str:
        """Waits for ``serving MODEL on http://127.0.0.1:PORT``; returns the URL."""
        deadline = time.monotonic() + STARTUP_SECONDS
        while not (found := re.search(r"^serving .* on (http://127\.0\.0\.1:\d+)$", self.out.read_text(), re.M)):
            assert self.process.poll() is None, f"serve exited {self.process.returncode}: {self.err.read_text()}"
            assert time.monotonic() < deadline, f"serve was not ready in {STARTUP_SECONDS} s: {self.err.read_text()}"
            time.sleep(0.2)
        self.url = found[1]
        return self.url

    def stop(self) -> int:
        """SIGTERM, then its exit status."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=120)
        finally:
            if self.process.poll() is None:
                self.process.kill()


def call(url: str, body: bytes | None = None, headers: dict | None = None) -> tuple[int, dict, object]:
    """A GET (no body) or POST: the status, the headers, and the body (JSON where it is, else text)."""
    request = urllib.request.Request(url, data=body, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            status, head, raw = response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        status, head, raw = error.code, dict(error.headers), error.read()
    try:
        return status, head, json.loads(raw)
    except ValueError:
        return status, head, raw.decode()


def post(url: str, document: object) -> tuple[int, dict, object]:
    return call(url, json.dumps(document).encode(), {"Content-Type": "application/json"})


def as_dicts(elements: list) -> list[dict]:
    """InferenceClient's `TokenClassificationOutputElement`s as plain dicts (less the field it sets to None: ``entity``
    beside ``entity_group``), keys the dataclass does not declare (``task``) included."""
    return [{key: value for key, value in element.items() if value is not None} for element in elements]


@pytest.fixture(scope="module")
def reference(trained):
    """The trained model in this process, and predict's entities of `TEXTS` (the server's default options)."""
    model, tokenizer = load_model(trained[0])
    return model, tokenizer, list(predict_texts(model, tokenizer, TEXTS))


@pytest.fixture(scope="module")
def server(trained, tmp_path_factory):
    served = Served(trained[0], tmp_path_factory.mktemp("server"))
    try:
        served.ready()
        yield served
    finally:
        assert served.stop() == 0, served.err.read_text()[-3000:]


@pytest.fixture
def online_client(monkeypatch):
    """huggingface_hub refuses every request under HF_HUB_OFFLINE=1, loopback too: lifted for this test's client,
    which reaches only the test's own server."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)


def test_inference_client_gets_predicts_entities(server, reference, online_client):
    from huggingface_hub import InferenceClient

    model, tokenizer, expected = reference
    client = InferenceClient(base_url=server.url)
    for text, want in zip(TEXTS[:12], expected[:12], strict=True):
        assert_same_entities(as_dicts(client.token_classification(text)), want)
    assert any(expected[:12]), "the trained model finds no entity in these sentences: nothing was compared"
    simple = list(predict_texts(model, tokenizer, TEXTS[:4], aggregation_strategy="simple", stride=8))
    for text, want in zip(TEXTS[:4], simple, strict=True):
        got = client.token_classification(text, aggregation_strategy="simple", stride=8)
        assert_same_entities(as_dicts(got), want)
    status, _, answer = post(f"{server.url}/predict", {"inputs": TEXTS[:5]})  # a list: a list of lists
    assert status == 200
    for got, want in zip(answer, expected[:5], strict=True):
        assert_same_entities(got, want)


def test_the_clients_error_carries_the_servers_message(server, online_client):
    from huggingface_hub import InferenceClient
    from huggingface_hub.errors import HfHubHTTPError

    with pytest.raises(HfHubHTTPError) as caught:
        InferenceClient(base_url=server.url).token_classification("BRCA1", aggregation_strategy="mean")
    assert caught.value.response.status_code == 422
    assert caught.value.server_message.startswith("parameters.aggregation_strategy: expected one of none, simple")


def test_200_concurrent_requests_are_each_answered_with_their_own_entities(server, reference):
    expected = reference[2]
    with ThreadPoolExecutor(max_workers=len(TEXTS)) as pool:
        answers = list(pool.map(lambda text: post(server.url, {"inputs": text}), TEXTS))
    assert [status for status, _, _ in answers] == [200] * len(TEXTS)
    for (_, _, got), want in zip(answers, expected, strict=True):
        assert_same_entities(got, want)


def test_a_text_longer_than_the_window_is_windowed_as_predict_does(server, reference):
    model, tokenizer, _ = reference
    text = " ".join(TEXTS[:40])
    assert len(tokenizer(text)["input_ids"]) > model.config.max_position_embeddings  # windows, not one pass
    status, _, answer = post(server.url, {"inputs": text})
    assert status == 200
    assert_same_entities(answer, next(predict_texts(model, tokenizer, [text])))


@pytest.mark.parametrize(
    "body, status, message",
    [
        (b'{"inputs": "BRCA1"', 422, "malformed JSON: Expecting ',' delimiter"),
        (b'{"inputs": ["a", "b", 3]}', 422, "inputs[2]: expected a string, got a number (3)"),
        (b'{"inputs": []}', 422, "inputs: an empty list"),
        (b'{"inputs": "a", "parameters": {"stride": "8"}}', 422, "parameters.stride: expected a whole number"),
        (b'{"inputs": "a", "parameters": {"top_k": 3}}', 422, "parameters.top_k: unknown"),
        (b'{"inputs": "a", "parameters": {"stride": 100000}}', 422, "stride"),  # the batcher's check
        (json.dumps({"inputs": ["a"] * 33}).encode(), 413, "inputs: 33 texts; the limit is 32 a request"),
        (json.dumps({"inputs": "a" * 2_000_000}).encode(), 413, "bytes; the limit is 2000000 bytes"),
    ],
    ids=["json", "type", "empty", "stride-type", "unknown", "stride-large", "texts", "bytes"],
)
def test_a_bad_request_gets_its_status_and_a_message_naming_the_field(server, body, status, message):
    got, head, answer = call(server.url, body, {"Content-Type": "application/json"})
    assert got == status and message in answer["error"], answer
    assert head["content-type"] == "application/json" and set(answer) == {"error", "error_type"}


def test_a_large_body_is_refused_by_its_length_or_while_it_streams(server):
    host, port = server.url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=60)
    connection.putrequest("POST", "/")  # announces 3 GB and sends none of it: refused on the header alone
    connection.putheader("Content-Length", str(3 * 10**9))
    connection.endheaders()
    response = connection.getresponse()
    assert response.status == 413
    assert json.loads(response.read())["error"].startswith("the request body is 3000000000 bytes; the limit is")
    connection.close()
    connection = http.client.HTTPConnection(host, int(port), timeout=60)
    chunks = (b"x" * 100_000 for _ in range(21))  # 2.1 MB chunked, no length: refused as it passes the limit
    connection.request("POST", "/", body=chunks, encode_chunked=True)
    response = connection.getresponse()
    assert response.status == 413
    assert json.loads(response.read())["error"].startswith("the request body is over 2000000 bytes")


def test_health_info_and_metrics(server):
    assert call(f"{server.url}/health")[::2] == (200, {"status": "ok"})
    status, _, info = call(f"{server.url}/info")
    assert status == 200
    assert (info["model_type"], info["hidden_layer"], info["aggregation_strategy"]) == ("bert-layer-tokclf", 2, "first")
    assert info["batching"] == {"max_wait_ms": 5.0, "max_batch_tokens": 16384, "forward_batch_tokens": 1024,
                                "max_batch_requests": 64, "max_concurrent_requests": 512}  # fmt: skip
    assert info["limits"] == {"payload_limit": 2_000_000, "max_client_batch_size": 32}
    assert info["versions"]["hf-layer-tokclf"] and info["versions"]["transformers"]
    assert call(f"{server.url}/no-such-route")[0] == 404
    post(server.url, {"inputs": TEXTS[0]})
    status, head, text = call(f"{server.url}/metrics")
    assert status == 200 and head["content-type"].startswith("text/plain")
    assert re.search(r'^hf_layer_tokclf_requests_total\{route="/",status="200"\} [1-9]', text, re.M)
    assert re.search(r'^hf_layer_tokclf_requests_total\{route="other",status="404"\} 1\.0$', text, re.M)
    assert re.search(r'^hf_layer_tokclf_request_duration_seconds_count\{route="/"\} [1-9]', text, re.M)
    for name in ("batch_requests", "batch_texts", "batch_tokens"):
        assert re.search(rf"^hf_layer_tokclf_{name}_count [1-9]", text, re.M), name
    assert re.search(r"^hf_layer_tokclf_queue_depth 0\.0$", text, re.M)
    assert re.search(r"^hf_layer_tokclf_ready 1\.0$", text, re.M)


def test_a_full_queue_gets_503_and_sigterm_answers_the_requests_in_flight(trained, reference, tmp_path):
    """Two requests admitted (each of 8 long texts: seconds of the model's time), a third refused; SIGTERM then
    answers the two and the server exits 0."""
    model, tokenizer, _ = reference
    long_text = " ".join(TEXTS[:60])
    expected = next(predict_texts(model, tokenizer, [long_text]))
    served = Served(trained[0], tmp_path, "--max-concurrent-requests", "2", "--payload-limit", "10000000")
    try:
        url = served.ready()
        answers: dict[int, tuple] = {}
        threads = [threading.Thread(target=lambda i=i: answers.update({i: post(url, {"inputs": [long_text] * 8})}))
                   for i in range(2)]  # fmt: skip
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + 60
        while "hf_layer_tokclf_requests_in_flight 2.0" not in call(f"{url}/metrics")[2]:
            assert time.monotonic() < deadline, "the two requests were never in flight together"
            time.sleep(0.02)
        status, head, answer = post(url, {"inputs": TEXTS[0]})
        assert status == 503 and head["retry-after"].isdigit() and answer["error_type"] == "overloaded", answer
        assert "limit of 2 concurrent requests" in answer["error"]
        assert not answers  # still in flight when SIGTERM comes
        served.process.send_signal(signal.SIGTERM)
        for thread in threads:
            thread.join(timeout=300)
        assert served.process.wait(timeout=120) == 0, served.err.read_text()[-3000:]
    finally:
        served.stop()
    for i in range(2):
        assert answers[i][0] == 200, answers[i]
        for got in answers[i][2]:
            assert_same_entities(got, expected)
    assert "Traceback" not in served.err.read_text()


def test_a_model_that_cannot_load_exits_1_saying_why(trained, tmp_path):
    broken = tmp_path / "broken"
    broken.mkdir()
    for file in Path(trained[0]).iterdir():
        if file.is_file():
            (broken / file.name).write_bytes(file.read_bytes())
    (broken / "model.safetensors").write_bytes(b"not a safetensors file")
    served = Served(broken, tmp_path)
    assert served.process.wait(timeout=STARTUP_SECONDS) == 1
    err = served.err.read_text()
    assert "hf-layer-tokclf serve: error: " in err and "could not load" in err
    assert "serving" not in served.out.read_text()


# --- in this process ---------------------------------------------------------------------------------------------


@contextmanager
def served_in_process(app, timeout: float = STARTUP_SECONDS) -> Iterator:
    """A TestClient on ``app``, started (its lifespan), once ``/health`` is no longer ``loading``."""
    from starlette.testclient import TestClient

    with TestClient(app) as client:
        deadline = time.monotonic() + timeout
        while client.get("/health").json()["status"] == "loading":
            assert time.monotonic() < deadline
            time.sleep(0.05)
        yield client


def test_health_says_loading_until_the_model_is_loaded_then_ok(monkeypatch, trained, reference):
    from hf_layer_tokclf.server import app as app_module

    release = threading.Event()
    monkeypatch.setattr(app_module, "load", lambda settings: release.wait(60) and reference[:2])
    from starlette.testclient import TestClient

    with TestClient(app_module.build_app(ServerSettings(model=str(trained[0])))) as client:
        health = client.get("/health")
        assert (health.status_code, health.json()) == (503, {"status": "loading"})
        early = client.post("/", json={"inputs": TEXTS[0]})
        assert early.status_code == 503 and early.headers["retry-after"] == "5"
        assert early.json()["error_type"] == "loading" and client.get("/info").status_code == 503
        release.set()
        deadline = time.monotonic() + 60
        while client.get("/health").status_code != 200:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        assert client.get("/health").json() == {"status": "ok"}
        assert_same_entities(client.post("/", json={"inputs": TEXTS[0]}).json(), reference[2][0])


def test_a_failed_load_is_said_by_health_and_stops_the_server(monkeypatch, trained):
    from hf_layer_tokclf.server import app as app_module

    def load(settings):
        raise OSError("disk on fire")

    monkeypatch.setattr(app_module, "load", load)
    app, stopped = app_module.build_app(ServerSettings(model=str(trained[0]))), []
    app.state.server.on_failure.append(lambda: stopped.append(True))
    with served_in_process(app) as client:
        health = client.get("/health")
        assert (health.status_code, health.json()) == (503, {"status": "failed", "error": "OSError: disk on fire"})
        answer = client.post("/", json={"inputs": "a"})
        assert answer.status_code == 503 and "could not load: OSError: disk on fire" in answer.json()["error"]
        assert stopped == [True]


@pytest.fixture(scope="module")
def trained_onnx(trained, tmp_path_factory):
    from hf_layer_tokclf.running.export import export_onnx

    out = tmp_path_factory.mktemp("onnx") / "fp32"
    export_onnx(trained[0], out)
    return out


def test_the_onnx_folder_serves_the_same_entities(trained_onnx, reference, tmp_path):
    """``serve ONNX_FOLDER`` (export-onnx's folder), started as a user starts it, answers with predict's entities."""
    served = Served(trained_onnx, tmp_path)
    try:
        url = served.ready()
        status, _, answer = post(url, {"inputs": TEXTS[:16]})
        assert status == 200, answer
        for got, want in zip(answer, reference[2][:16], strict=True):
            assert_same_entities(got, want)
        assert call(f"{url}/info")[2]["engine"] == "onnx"
    finally:
        assert served.stop() == 0


def test_a_multitask_model_answers_each_tasks_entities(multitask_dir):
    from huggingface_hub import TokenClassificationOutputElement

    from hf_layer_tokclf.server.app import build_app

    model, tokenizer = load_model(multitask_dir)
    expected = list(predict_texts(model, tokenizer, TEXTS[:8]))
    assert "task" in next(entity for entities in expected for entity in entities)
    with served_in_process(build_app(ServerSettings(model=str(multitask_dir)), loaded=(model, tokenizer))) as client:
        answer = client.post("/", json={"inputs": TEXTS[:8]})
        assert answer.status_code == 200
        for got, want in zip(answer.json(), expected, strict=True):
            assert_same_entities(got, want)
        found = next(i for i, entities in enumerate(expected) if entities)
        single = client.post("/", json={"inputs": TEXTS[found]}).content
    # what InferenceClient.token_classification makes of an answer: "task" kept, though its dataclass lacks it
    assert_same_entities(as_dicts(TokenClassificationOutputElement.parse_obj_as_list(single)), expected[found])


# --- the command line: what is refused before the port is bound ---------------------------------------------------


@pytest.fixture
def no_server(monkeypatch):
    """Serving fails the test: what is refused must be refused before the port is bound."""
    from hf_layer_tokclf.server import app as app_module

    def run_local(*args, **kwargs):
        raise AssertionError("the server started")

    monkeypatch.setattr(app_module, "run_local", run_local)


def test_remote_code_is_refused_without_consent_before_binding(tmp_path, tokenizer, capsys, no_server):
    from hf_layer_tokclf.cli.main import main

    marker = tmp_path / "marker.txt"
    folder = foreign_code_folder(tmp_path / "custom", tokenizer, marker)
    assert main(["serve", str(folder)]) == 2
    err = capsys.readouterr().err
    assert f"hf-layer-tokclf serve: error: {folder} needs the Python code it ships" in err  # predict's message
    assert "--trust-remote-code" in err and "nothing was run" in err and not marker.exists()


def test_serve_without_the_serve_extra_is_refused_first(trained, monkeypatch, capsys, no_server):
    from hf_layer_tokclf.cli.main import main

    monkeypatch.setitem(sys.modules, "fastapi", None)
    assert main(["serve", str(trained[0])]) == 2
    assert 'pip install "hf-layer-tokclf[serve]"' in capsys.readouterr().err


def test_the_options_make_the_servers_settings():
    from hf_layer_tokclf.cli.serve import serve_parser, serve_settings

    args = serve_parser().parse_args(
        ["runs/x", "--max-wait-ms", "0", "--max-batch-tokens", "4096", "--max-batch-requests", "1",
         "--max-concurrent-requests", "8", "--max-client-batch-size", "4", "--payload-limit", "1000",
         "--tasks", "disease,cg", "--decoding", "argmax", "--aggregation-strategy", "simple"]
    )  # fmt: skip
    settings = serve_settings(args)
    assert settings.batching == BatchSettings(max_wait_ms=0.0, max_batch_tokens=4096, max_batch_requests=1,
                                              max_concurrent_requests=8)  # fmt: skip
    assert (settings.max_client_batch_size, settings.payload_limit, settings.tasks) == (4, 1000, ("disease", "cg"))
    assert (settings.decoding, settings.aggregation_strategy, args.host, args.port) == ("argmax", "simple", "127.0.0.1",
                                                                                        8080)  # fmt: skip
