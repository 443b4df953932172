"""Every bad input answered: one table of bad inputs, each through the real CLI.

Each case sets up one bad input (a prompt file, an adapter, an option, a run directory, a
judgments file, a judge endpoint), runs ``evalharness`` in-process, and asserts what a user
sees: exit code 2, a message that names the problem (the case's expected fragments) and
says "Fix", no traceback, and not one file under the test's folder created, changed or
removed (every file is hashed before and after). Cases that do not need a model use
``--backend fake``; the adapters are a private copy of the tiny kit's.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.fakes.openai_server import FakeOpenAIServer, Fault, Reply
from tests.helpers import write_jsonl

REPO = Path(__file__).resolve().parents[2]
PROMPTS = [{"id": "a", "prompt": "Where is Redmoor College?", "reference": "In Redmoor."},
           {"id": "b", "prompt": "Who founded Ashcombe?", "reference": "Its guild."}]
JUDGMENT = {"prompt_id": "p0", "first": "tuned", "second": "base", "winner": "A"}


@dataclass
class Setup:
    """One case's folder, its inputs, and the means to break them."""

    tmp: Path
    kit: object
    cli: Callable[..., object]
    stack: contextlib.ExitStack
    prompts: Path = field(init=False)
    adapters: Path = field(init=False)

    def __post_init__(self) -> None:
        self.prompts = write_jsonl(self.tmp / "ok.jsonl", PROMPTS)
        self.adapters = self.tmp / "adapters"
        shutil.copytree(self.kit.root / "adapters", self.adapters)  # type: ignore[attr-defined]

    def adapter(self, name: str = "qv-r8") -> Path:
        return self.adapters / name

    def file(self, name: str, content: bytes | str) -> Path:
        path = self.tmp / name
        path.write_bytes(content.encode() if isinstance(content, str) else content)
        return path

    def lines(self, name: str, *rows: object) -> Path:
        return self.file(name, "".join(json.dumps(r) + "\n" for r in rows))

    def edit_config(self, adapter: str = "qv-r8", **changes: object) -> None:
        config = self.adapter(adapter) / "adapter_config.json"
        config.write_text(json.dumps({**json.loads(config.read_text()), **changes}))

    def weights(self, adapter: str = "qv-r8") -> Path:
        return self.adapter(adapter) / "adapter_model.safetensors"

    def generate(self, *extra: object, prompts: Path | None = None) -> list[str]:
        return ["generate", str(self.adapter()), "--prompts", str(prompts or self.prompts),
                "--backend", "fake", *map(str, extra)]

    def compare(self, *extra: object) -> list[str]:
        return ["compare", str(self.adapter()), "--prompts", str(self.prompts), "--backend",
                "fake", "--no-verify", "--bootstrap", "100", *map(str, extra)]

    def finished_run(self) -> Path:
        """A complete compare run (fake backend, reference judge) to misuse."""
        run_dir = self.tmp / "runs" / "done"
        result = self.cli(*self.compare("--run-dir", run_dir))
        assert result.code == 0, result.text  # type: ignore[attr-defined]
        return run_dir

    def judge_folder(self, **settings: str) -> Path:
        """pairwise-binary with fast retries (a failing endpoint answers in seconds)."""
        folder = self.tmp / "judge-fast"
        shutil.copytree(REPO / "judges" / "pairwise-binary", folder)
        config = folder / "config.yaml"
        text = config.read_text()
        values = {"retries": "1", "invalid_retries": "0", "timeout_s": "3",
                  "backoff": "{initial_s: 0.05, max_s: 0.1}", "api_key_env": "null",
                  **settings}
        for key, value in values.items():
            text = re.sub(rf"^{key}:.*$", f"{key}: {value}", text, flags=re.M)
        config.write_text(text)
        return folder

    def server(self, fault: Fault | None = None) -> str:
        """A judge endpoint on 127.0.0.1 answering every call with ``fault`` (or [[A]])."""
        def respond(call: object) -> Reply | Fault:
            return fault or Reply("[[A]]")

        server = self.stack.enter_context(FakeOpenAIServer(respond))
        return server.base_url

    def with_judge(self, url: str, **settings: str) -> list[str]:
        return self.compare("--judge", self.judge_folder(**settings), "--judge-url", url,
                            "--judge-model", "judge-m")


def _safetensors(header: dict[str, object], data: bytes) -> bytes:
    raw = json.dumps(header).encode()
    return struct.pack("<Q", len(raw)) + raw + data


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


Build = Callable[[Setup], list[str]]
CASES: dict[str, tuple[Build, tuple[str, ...]]] = {}


def case(name: str, *expected: str) -> Callable[[Build], Build]:
    def register(build: Build) -> Build:
        assert name not in CASES, name
        CASES[name] = (build, expected)
        return build

    return register


# -- prompt files ------------------------------------------------------------------------

case("prompts: missing file", "nope.jsonl: prompt set not found")(
    lambda s: s.generate(prompts=s.tmp / "nope.jsonl"))
case("prompts: malformed JSON line", "bad.jsonl:2: not valid JSON")(
    lambda s: s.generate(prompts=s.file("bad.jsonl", '{"id": "a", "prompt": "x"}\n{"id": \n')))
case("prompts: duplicate id", "dup.jsonl:2: duplicate id 'a'")(
    lambda s: s.generate(prompts=s.lines("dup.jsonl", {"id": "a", "prompt": "x"},
                                         {"id": "a", "prompt": "y"})))
case("prompts: Latin-1 bytes", "latin.jsonl:2", "not UTF-8", "byte 0xe9 at offset",
     "Latin-1")(
    lambda s: s.generate(prompts=s.file(
        "latin.jsonl", b'{"id": "a", "prompt": "x"}\n{"id": "b", "prompt": "caf\xe9?"}\n')))
case("prompts: Windows-1252 quotes", "cp.jsonl:1", "not UTF-8", "Windows-1252")(
    lambda s: s.generate(prompts=s.file("cp.jsonl",
                                        b'{"id": "a", "prompt": "\x93quoted\x94?"}\n')))
case("prompts: UTF-16 little-endian with BOM", "u16.jsonl", "UTF-16", "little-endian")(
    lambda s: s.generate(prompts=s.file(
        "u16.jsonl", '{"id": "a", "prompt": "x"}\n'.encode("utf-16"))))
case("prompts: UTF-16 big-endian with BOM", "u16be.jsonl", "UTF-16", "big-endian")(
    lambda s: s.generate(prompts=s.file(
        "u16be.jsonl", b"\xfe\xff" + '{"id": "a", "prompt": "x"}\n'.encode("utf-16-be"))))
case("prompts: UTF-16 without BOM", "u16n.jsonl", "UTF-16", "NUL")(
    lambda s: s.generate(prompts=s.file(
        "u16n.jsonl", '{"id": "a", "prompt": "x"}\n'.encode("utf-16-le"))))
case("prompts: Latin-1 CSV", "latin.csv:3", "not UTF-8")(
    lambda s: s.generate(prompts=s.file("latin.csv", b"id,prompt\na,ok\nb,caf\xe9\n")))
case("prompts: binary file", "blob.jsonl", "not UTF-8")(
    lambda s: s.generate(prompts=s.file("blob.jsonl", b"\x89PNG\r\n\x1a\n\xff\xd8\xff")))
case("prompts: float id", "ids.jsonl:1", "'id' must be text", "float 1.0")(
    lambda s: s.generate(prompts=s.lines("ids.jsonl", {"id": 1.0, "prompt": "x"})))
case("prompts: boolean id", "ids.jsonl:1", "'id' must be text", "bool true")(
    lambda s: s.generate(prompts=s.lines("ids.jsonl", {"id": True, "prompt": "x"})))
case("prompts: list id", "ids.jsonl:1", "'id' must be text", "list [1]")(
    lambda s: s.generate(prompts=s.lines("ids.jsonl", {"id": [1], "prompt": "x"})))
case("prompts: missing id", "ids.jsonl:1: missing 'id'")(
    lambda s: s.generate(prompts=s.lines("ids.jsonl", {"prompt": "x"})))
case("prompts: empty prompt", "e.jsonl:1: empty prompt for id 'a'")(
    lambda s: s.generate(prompts=s.lines("e.jsonl", {"id": "a", "prompt": "  "})))
case("prompts: prompt is a number", "n.jsonl:1: empty prompt for id 'a'")(
    lambda s: s.generate(prompts=s.lines("n.jsonl", {"id": "a", "prompt": 42})))
case("prompts: last message is the assistant's", "m.jsonl:1", "the last message is the "
     "assistant's")(
    lambda s: s.generate(prompts=s.lines("m.jsonl", {"id": "a", "messages": [
        {"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]})))
case("prompts: unknown role", "m.jsonl:1", "messages[0] needs a 'role'")(
    lambda s: s.generate(prompts=s.lines("m.jsonl", {"id": "a", "messages": [
        {"role": "robot", "content": "Hi"}]})))
case("prompts: empty messages", "m.jsonl:1", "'messages' must be a non-empty list")(
    lambda s: s.generate(prompts=s.lines("m.jsonl", {"id": "a", "messages": []})))
case("prompts: prompt and messages both", "m.jsonl:1",
     "give exactly one of 'prompt' or 'messages'")(
    lambda s: s.generate(prompts=s.lines("m.jsonl", {"id": "a", "prompt": "x", "messages": [
        {"role": "user", "content": "Hi"}]})))
case("prompts: unknown field", "u.jsonl:1", "unknown field(s) promt")(
    lambda s: s.generate(prompts=s.lines("u.jsonl", {"id": "a", "promt": "x"})))
case("prompts: empty file", "the prompt set is empty")(
    lambda s: s.generate(prompts=s.file("empty.jsonl", "")))
case("prompts: one JSON array", "arr.json:1", "one JSON array, not JSON lines")(
    lambda s: s.generate(prompts=s.file("arr.json", json.dumps(PROMPTS, indent=2))))
case("prompts: a field twice", "twice.jsonl:1", "field 'prompt' appears twice")(
    lambda s: s.generate(prompts=s.file("twice.jsonl",
                                        '{"id": "a", "prompt": "x", "prompt": "y"}\n')))
case("prompts: unknown extension", "unknown prompt set format '.txt'")(
    lambda s: s.generate(prompts=s.file("p.txt", "Where is Redmoor?\n")))
case("prompts: CSV with a ragged row", "ragged.csv", "cannot read")(
    lambda s: s.generate(prompts=s.file("ragged.csv", "id,prompt\na,x\nb,y,z,w\n")))
case("prompts: reference is not text", "r.jsonl:1", "'reference' must be text")(
    lambda s: s.generate(prompts=s.lines("r.jsonl", {"id": "a", "prompt": "x",
                                                      "reference": 3})))
case("prompts: category is not text", "c.jsonl:1", "'category' must be text")(
    lambda s: s.generate(prompts=s.lines("c.jsonl", {"id": "a", "prompt": "x",
                                                      "category": ["x"]})))
case("prompts: compare without references, reference judge", "has none",
     "--judge pairwise-binary")(
    lambda s: [*s.compare()[:3], str(s.lines("noref.jsonl", {"id": "a", "prompt": "x"})),
               *s.compare()[4:]])

# -- perplexity data ---------------------------------------------------------------------

case("ppl data: text is a number", "d.jsonl:1", "'text' must be text")(
    lambda s: ["ppl", str(s.adapter()), "--backend", "fake", "--data",
               str(s.lines("d.jsonl", {"id": "a", "text": 12}))])
case("ppl data: float id", "d.jsonl:1", "'id' must be text")(
    lambda s: ["ppl", str(s.adapter()), "--backend", "fake", "--data",
               str(s.lines("d.jsonl", {"id": 2.5, "text": "x"}))])
case("ppl data: no response", "d.jsonl:1: needs 'text'")(
    lambda s: ["ppl", str(s.adapter()), "--backend", "fake", "--data",
               str(s.lines("d.jsonl", {"id": "a", "prompt": "Q?"}))])
case("ppl data: Latin-1 bytes", "d.jsonl:1", "not UTF-8", "offset")(
    lambda s: ["ppl", str(s.adapter()), "--backend", "fake", "--data",
               str(s.file("d.jsonl", b'{"id": "a", "text": "na\xefve"}\n'))])
case("ppl data: empty text", "d.jsonl:1: empty text to score")(
    lambda s: ["ppl", str(s.adapter()), "--backend", "fake", "--data",
               str(s.lines("d.jsonl", {"id": "a", "text": " "}))])

# -- adapters ----------------------------------------------------------------------------


def _truncate_weights(s: Setup) -> list[str]:
    data = s.weights().read_bytes()
    s.weights().write_bytes(data[: len(data) // 2])
    return s.generate()


def _garbage_header(s: Setup) -> list[str]:
    s.weights().write_bytes(struct.pack("<Q", 12) + b"not json at all!")
    return s.generate()


def _garbage_bin(s: Setup) -> list[str]:
    s.weights().unlink()
    (s.adapter() / "adapter_model.bin").write_bytes(b"<html>404 Not Found</html>")
    return s.generate()


def _no_lora_tensors(s: Setup) -> list[str]:
    s.weights().write_bytes(_safetensors(
        {"foo": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}, b"\0\0\0\0"))
    return s.generate()


def _other_bases(s: Setup) -> list[str]:
    other = s.tmp / "base2"
    shutil.copytree(s.kit.base, other)  # type: ignore[attr-defined]
    s.edit_config("all-r16", base_model_name_or_path=str(other))
    return [*s.generate(), str(s.adapter("all-r16"))]


case("adapter: missing folder", "no-such: no such adapter or model folder")(
    lambda s: ["generate", str(s.tmp / "no-such"), "--prompts", str(s.prompts)])
case("adapter: a file, not a folder", "notes.txt: no adapter_config.json")(
    lambda s: ["generate", str(s.file("notes.txt", "hi")), "--prompts", str(s.prompts)])
case("adapter: unreadable config", "adapter_config.json: unreadable adapter config")(
    lambda s: (s.adapter().joinpath("adapter_config.json").write_text("{oops"), s.generate())[1])
case("adapter: config is a list", "adapter_config.json: expected a JSON object")(
    lambda s: (s.adapter().joinpath("adapter_config.json").write_text("[]"), s.generate())[1])
case("adapter: weights missing", "no adapter weights")(
    lambda s: (s.weights().unlink(), s.generate())[1])
case("adapter: truncated safetensors", "adapter_model.safetensors", "truncated")(
    _truncate_weights)
case("adapter: safetensors of 4 bytes", "adapter_model.safetensors", "truncated")(
    lambda s: (s.weights().write_bytes(b"\x00\x01\x02\x03"), s.generate())[1])
case("adapter: safetensors header is not JSON", "adapter_model.safetensors", "corrupt")(
    _garbage_header)
case("adapter: garbage adapter_model.bin", "adapter_model.bin: not a PyTorch checkpoint")(
    _garbage_bin)
case("adapter: weights hold no LoRA matrices", "holds no LoRA matrices")(_no_lora_tensors)
case("adapter: config rank disagrees with weights", "has rank 8", "says r=4")(
    lambda s: (s.edit_config(r=4), s.generate())[1])
case("adapter: rank is text", "'r' (and 'rank_pattern' values) must be positive")(
    lambda s: (s.edit_config(r="eight"), s.generate())[1])
case("adapter: rank zero", "must be positive whole numbers", "r=0")(
    lambda s: (s.edit_config(r=0), s.generate())[1])
case("adapter: lora_alpha NaN", "'lora_alpha' a finite number", "lora_alpha=nan")(
    lambda s: (s.adapter().joinpath("adapter_config.json").write_text(
        s.adapter().joinpath("adapter_config.json").read_text()[:-1] + ', "lora_alpha": NaN}'),
        s.generate())[1])
case("adapter: target_modules is a number", "target_modules must be a list")(
    lambda s: (s.edit_config(target_modules=42), s.generate())[1])
case("adapter: trained for another base", "c_attn do not exist in base model")(
    lambda s: (s.edit_config(target_modules=["c_attn"]), s.generate())[1])
case("adapter: base not on this machine", "/models/llama-3.2-3b-instruct", "--base")(
    lambda s: (s.edit_config(base_model_name_or_path="/models/llama-3.2-3b-instruct"),
               s.generate())[1])
case("adapter: base name not text", "base_model_name_or_path must be text")(
    lambda s: (s.edit_config(base_model_name_or_path=["x"]), s.generate())[1])
case("adapter: not LoRA", "peft_type is PREFIX_TUNING")(
    lambda s: (s.edit_config(peft_type="PREFIX_TUNING"), s.generate())[1])
case("adapter: adapters on different bases", "trained on different base models")(_other_bases)
case("adapter: baseline without a base", "'baseline' needs a base model")(
    lambda s: ["generate", "baseline", "--prompts", str(s.prompts), "--backend", "fake"])
case("adapter: rank above --max-lora-rank", "adapter all-r16 has rank 16",
     "--max-lora-rank is 8", "pass --max-lora-rank 16 or omit it")(
    lambda s: ["generate", str(s.adapter("all-r16")), "--prompts", str(s.prompts),
               "--backend", "vllm", "--max-lora-rank", "8"])

# -- options -----------------------------------------------------------------------------

case("option: temperature inf", "--temperature inf", "not a finite number")(
    lambda s: s.generate("--temperature", "inf"))
case("option: temperature nan", "--temperature nan", "not a finite number")(
    lambda s: s.generate("--temperature", "nan"))
case("option: negative temperature", "--temperature -1", "at least 0")(
    lambda s: s.generate("--temperature", "-1"))
case("option: top-p 0", "--top-p 0", "above 0")(lambda s: s.generate("--top-p", "0"))
case("option: top-p above 1", "--top-p 1.5", "at most 1")(
    lambda s: s.generate("--top-p", "1.5"))
case("option: negative seed", "--seed -1", "at least 0")(lambda s: s.generate("--seed", "-1"))
case("option: zero max new tokens", "--max-new-tokens")(
    lambda s: s.generate("--max-new-tokens", "0"))
case("option: unknown dtype", "--dtype 'float8'", "float32, float16, bfloat16, auto")(
    lambda s: s.generate("--dtype", "float8"))
case("option: unknown device", "--device 'tpu9'", "cpu, cuda, cuda:N")(
    lambda s: ["generate", str(s.adapter()), "--prompts", str(s.prompts), "--device", "tpu9"])
case("option: GPU index that does not exist", "--device cuda:99")(
    lambda s: ["generate", str(s.adapter()), "--prompts", str(s.prompts), "--device",
               "cuda:99"])
case("option: device with a backend that places itself", "--device is a setting of "
     "--backend hf")(lambda s: s.generate("--device", "cpu"))
case("option: unknown long-prompt policy", "--on-long-prompt 'chop'", "error, truncate")(
    lambda s: s.generate("--on-long-prompt", "chop"))
case("option: negative stats seed", "--stats-seed -1", "at least 0")(
    lambda s: s.compare("--stats-seed", "-1"))
case("option: unknown backend", "unknown backend 'tensorrt'")(
    lambda s: s.generate("--backend", "tensorrt"))
case("option: misspelt option", "--temprature")(lambda s: s.generate("--temprature", "0.7"))
case("option: unknown judge", "pairwise-bianry")(
    lambda s: s.compare("--judge", "pairwise-bianry"))


def _long_prompt(s: Setup, *extra: str) -> list[str]:
    huge = s.lines("long.jsonl", {"id": "short", "prompt": "Where is Redmoor?"},
                   {"id": "huge", "prompt": "Where is Redmoor College? " * 8000})
    return ["generate", str(s.adapter()), "--prompts", str(huge), "--backend", "hf", *extra]


case("prompt longer than the context", "'huge' is", "tokens", "context", "256 tokens",
     "--on-long-prompt truncate")(_long_prompt)
case("truncate with no room for the answer", "--on-long-prompt truncate must leave room",
     "--max-new-tokens 300")(
    lambda s: _long_prompt(s, "--on-long-prompt", "truncate", "--max-new-tokens", "300"))

# -- run directories ---------------------------------------------------------------------

case("run dir: show a folder that is not a run", "not a run directory")(
    lambda s: ["show", str(s.tmp / "adapters")])
case("run dir: report on a folder that is not a run", "adapters")(
    lambda s: ["report", str(s.tmp / "adapters")])
case("run dir: judge a folder that is not a run", "adapters")(
    lambda s: ["judge", str(s.tmp / "adapters")])
case("run dir: --run-dir is a file", "afile")(
    lambda s: s.generate("--run-dir", s.file("afile", "x")))
case("run dir: --runs-root is a file", "rootfile")(
    lambda s: s.generate("--runs-root", s.file("rootfile", "x")))
case("run dir: corrupt manifest", "manifest.json")(
    lambda s: (s.finished_run().joinpath("manifest.json").write_text("{torn"),
               ["show", str(s.tmp / "runs" / "done")])[1])
case("run dir: reused with another prompt set", "done")(
    lambda s: (s.finished_run(), [*s.compare("--run-dir", s.tmp / "runs" / "done")[:3],
                                  str(s.lines("other.jsonl", {"id": "z", "prompt": "Q?",
                                                              "reference": "R"})),
                                  *s.compare("--run-dir", s.tmp / "runs" / "done")[4:]])[1])
case("run dir: a compare run reused by generate", "done")(
    lambda s: (s.finished_run(), s.generate("--run-dir", s.tmp / "runs" / "done"))[1])
case("run dir: judge a finished run with an unknown judge", "pairwise-bianry")(
    lambda s: ["judge", str(s.finished_run()), "--judge", "pairwise-bianry"])


def _read_only_run(s: Setup) -> list[str]:
    run = s.finished_run()
    for path in [run, *run.rglob("*")]:
        path.chmod(0o555 if path.is_dir() else 0o444)
    s.stack.callback(lambda: [p.chmod(0o755) for p in [run, *run.rglob("*")] if p.is_dir()])
    return ["report", str(run), "--format", "md"]


case("run dir: read-only run, report", "done")(_read_only_run)

# -- judgments files (evalharness stats FILE) ----------------------------------------------

case("stats: missing file", "nope.jsonl")(lambda s: ["stats", str(s.tmp / "nope.jsonl")])
case("stats: malformed line", "j.jsonl:2")(
    lambda s: ["stats", str(s.file("j.jsonl", json.dumps(JUDGMENT) + "\n{torn\n"))])
case("stats: unknown winner", "j.jsonl:1", "winner")(
    lambda s: ["stats", str(s.lines("j.jsonl", {**JUDGMENT, "winner": "C"}))])
case("stats: weight_a NaN", "j.jsonl:1", "weight_a", "finite", "from 0 to 1")(
    lambda s: ["stats", str(s.file("j.jsonl", json.dumps(JUDGMENT)[:-1]
                                   + ', "weight_a": NaN}\n')), "--baseline", "base"])
case("stats: weight_a above 1", "j.jsonl:1", "weight_a", "got 7.5", "from 0 to 1")(
    lambda s: ["stats", str(s.lines("j.jsonl", {**JUDGMENT, "weight_a": 7.5})),
               "--baseline", "base"])
case("stats: a model judged against itself", "j.jsonl:1", "'tuned' is judged against itself")(
    lambda s: ["stats", str(s.lines("j.jsonl", {**JUDGMENT, "second": "tuned"}))])
case("stats: empty file", "j.jsonl", "holds no judgments", "empty")(
    lambda s: ["stats", str(s.file("j.jsonl", ""))])
case("stats: missing field", "j.jsonl:1", "first")(
    lambda s: ["stats", str(s.lines("j.jsonl", {k: v for k, v in JUDGMENT.items()
                                                if k != "first"}))])
case("stats: Latin-1 bytes", "j.jsonl", "UTF-8")(
    lambda s: ["stats", str(s.file("j.jsonl", json.dumps(JUDGMENT)[:-1].encode()
                                   + b', "category": "caf\xe9"}\n'))])

# -- judge endpoints -----------------------------------------------------------------------

case("judge endpoint: nothing listening", "127.0.0.1")(
    lambda s: s.with_judge(f"http://127.0.0.1:{_free_port()}/v1"))
case("judge endpoint: 401 bad key", "401")(
    lambda s: s.with_judge(s.server(Fault.server_error(401, "invalid api key"))))
case("judge endpoint: 404 unknown model", "does not serve model")(
    lambda s: s.with_judge(s.server(Fault.server_error(404, "model judge-m not found"))))
case("judge endpoint: not a URL", "htp:/nowhere")(lambda s: s.with_judge("htp:/nowhere"))
case("judge endpoint: API key variable not set", "EVALHARNESS_TEST_UNSET_KEY")(
    lambda s: s.with_judge(s.server(), api_key_env="EVALHARNESS_TEST_UNSET_KEY"))


# -- the test ------------------------------------------------------------------------------


def _snapshot(root: Path) -> dict[str, str]:
    """Every file under ``root`` (by relative path) and its content hash."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@contextlib.contextmanager
def _no_key(name: str) -> Iterator[None]:
    saved = os.environ.pop(name, None)
    try:
        yield
    finally:
        if saved is not None:
            os.environ[name] = saved


def _param(name: str) -> object:
    marks = []
    if name == "run dir: read-only run, report" and hasattr(os, "geteuid") \
            and os.geteuid() == 0:
        marks.append(pytest.mark.skip(reason="root writes to read-only folders"))
    return pytest.param(name, marks=marks, id=name)


def test_the_table_has_at_least_60_cases() -> None:
    assert len(CASES) >= 60, len(CASES)


@pytest.mark.parametrize("name", [_param(n) for n in CASES])
def test_bad_input_is_answered(name: str, cli, kit, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    build, expected = CASES[name]
    with contextlib.ExitStack() as stack, _no_key("EVALHARNESS_TEST_UNSET_KEY"):
        argv = build(Setup(tmp_path, kit, cli, stack))
        before = _snapshot(tmp_path)
        result = cli(*argv)
        after = _snapshot(tmp_path)
    flat = " ".join(result.text.split())  # rich may wrap long paths
    assert "Traceback" not in result.text, result.text
    assert result.code == 2, result.text
    missing = [e for e in (*expected, "Fix") if e not in flat]
    assert not missing, f"{missing} not in: {flat}"
    changed = sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))
    assert not changed, f"files created, changed or removed: {changed}"
