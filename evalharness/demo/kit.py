"""The offline tiny-model kit: a tokenizer, a small Llama and LoRA adapters, built locally.

Nothing can be downloaded from a model hub on the machines this project is tested on, so
every model in tests and in the demo is built here, deterministically, in well under a
minute on two CPU cores::

    <kit>/base/                      a Llama-architecture model + byte-level BPE tokenizer
    <kit>/adapters/<name>/           adapter_config.json, adapter_model.safetensors,
                                     evalharness_training.json (hyperparameters + losses)
    <kit>/data/eval.jsonl            held-out question/answer pairs (perplexity data)
    <kit>/data/prompts.jsonl         the same questions as a prompt set with references
    <kit>/kit.json                   the recipe and build timings; a matching one means reuse

The models load in transformers, peft and vLLM like any hub model.
"""

from __future__ import annotations

import fcntl
import json
import shutil
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from evalharness.backends.tokens import scoring_ids
from evalharness.demo.corpus import DemoText, QAPair, demo_text
from evalharness.errors import require_module
from evalharness.keys import content_key
from evalharness.pipeline import Progress
from evalharness.schema import Message
from evalharness.store import atomic_write_text

KIT_VERSION = 3
"""Bumped when the builders change what they produce (invalidates cached kits)."""
SIDECAR = "evalharness_training.json"
"""Training hyperparameters and losses written beside each kit adapter."""

SPECIAL_TOKENS = ("<|pad|>", "<|bos|>", "<|end|>", "<|system|>", "<|user|>", "<|assistant|>")
CHAT_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}<|{{ message['role'] }}|>\n"
    "{{ message['content'] }}<|end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)
ATTENTION = ("q_proj", "k_proj", "v_proj", "o_proj")
MLP = ("gate_proj", "up_proj", "down_proj")


@dataclass(frozen=True)
class BaseRecipe:
    """How the base model is built."""

    vocab_size: int = 1024
    hidden_size: int = 128
    intermediate_size: int = 352
    layers: int = 2
    heads: int = 2  # head_dim 64: a size vLLM's CPU attention supports
    context: int = 256
    pretrain_steps: int = 300
    batch_size: int = 16
    learning_rate: float = 3e-3
    seed: int = 0


@dataclass(frozen=True)
class AdapterRecipe:
    """How one LoRA adapter is trained (``epochs=0`` keeps peft's no-op initialisation)."""

    name: str
    learning_rate: float = 2e-3
    r: int = 8
    alpha: int = 16
    epochs: int = 3
    target_modules: tuple[str, ...] = ("q_proj", "v_proj")
    batch_size: int = 8
    seed: int = 0


DEFAULT_ADAPTERS = (
    AdapterRecipe("qv-r8", learning_rate=3e-3, r=8, alpha=16, epochs=3),
    AdapterRecipe("all-r16", learning_rate=2e-3, r=16, alpha=32, epochs=3,
                  target_modules=ATTENTION + MLP),
    # Deliberately under-trained: a tenth of the learning rate, one epoch.
    AdapterRecipe("under-qv-r4", learning_rate=3e-4, r=4, alpha=8, epochs=1),
    # Deliberately over-trained: a high rate for thirty epochs memorises the training answers.
    AdapterRecipe("over-all-r32", learning_rate=5e-3, r=32, alpha=64, epochs=30,
                  target_modules=ATTENTION + MLP),
)
"""The kit's adapters (the demo league, and the test suite's): two sensible, one
under-trained, one over-trained."""


@dataclass(frozen=True)
class KitRecipe:
    """Everything that determines a kit; its hash names the cached build."""

    base: BaseRecipe = field(default_factory=BaseRecipe)
    adapters: tuple[AdapterRecipe, ...] = DEFAULT_ADAPTERS

    def key(self) -> str:
        """Content key of the recipe, the shipped text and the builder version."""
        return content_key({"v": KIT_VERSION, "recipe": asdict(self), "text": asdict(demo_text())})


@dataclass(frozen=True)
class Kit:
    """A built kit on disk."""

    root: Path
    """The kit folder."""
    recipe: KitRecipe
    """What it was built from."""
    seconds: dict[str, float]
    """Build time per stage (tokenizer, base, each adapter); empty when reused."""

    @property
    def base(self) -> Path:
        """The base model folder."""
        return self.root / "base"

    def adapter(self, name: str) -> Path:
        """The folder of adapter ``name``."""
        return self.root / "adapters" / name

    @property
    def eval_data(self) -> Path:
        """Held-out question/answer pairs for perplexity."""
        return self.root / "data" / "eval.jsonl"

    @property
    def prompts(self) -> Path:
        """The held-out questions as a prompt set with references."""
        return self.root / "data" / "prompts.jsonl"


def build_kit(root: Path, recipe: KitRecipe | None = None, force: bool = False,
              progress: Progress | None = None) -> Kit:
    """Build the kit into ``root``, or reuse it when a kit of the same recipe is there.

    Args:
        root: the kit folder (created).
        recipe: what to build; the default is base + the four ``DEFAULT_ADAPTERS``.
        force: rebuild even when a matching kit exists.
        progress: where to report pretraining steps and adapters trained.
    """
    require_module("torch", "hf", "Building the tiny model kit")
    require_module("peft", "hf", "Building the tiny model kit")
    from evalharness.backends.hf import quiet_transformers

    quiet_transformers()
    recipe = recipe or KitRecipe()
    # Absolute, because adapter configs record the base model's path as given.
    root = root.resolve()
    root.parent.mkdir(parents=True, exist_ok=True)
    # Two processes (test workers, a demo beside a test run) may ask for the same kit at once;
    # without this lock the second deletes the first's half-built kit.
    with root.parent.joinpath(f".{root.name}.lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        return _build_locked(root, recipe, force, progress)


def _build_locked(root: Path, recipe: KitRecipe, force: bool, progress: Progress | None) -> Kit:
    marker = root / "kit.json"
    if not force and marker.exists():
        saved = json.loads(marker.read_text())
        if saved.get("key") == recipe.key():
            return Kit(root, recipe, {})
    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True)
    text = demo_text()
    seconds: dict[str, float] = {}
    start = time.perf_counter()
    tokenizer = build_tokenizer(root / "base", text, recipe.base)
    seconds["tokenizer"] = time.perf_counter() - start
    start = time.perf_counter()
    pretrain_base(root / "base", tokenizer, text, recipe.base, progress)
    seconds["base"] = time.perf_counter() - start
    if progress is not None:
        progress.start("kit: training adapters", len(recipe.adapters))
    for adapter in recipe.adapters:
        start = time.perf_counter()
        train_adapter(root / "base", root / "adapters" / adapter.name, adapter, text)
        seconds[f"adapter:{adapter.name}"] = time.perf_counter() - start
        if progress is not None:
            progress.advance()
    _write_data(root / "data", text.eval_qa)
    info = {"key": recipe.key(), "recipe": asdict(recipe), "seconds": seconds}
    atomic_write_text(marker, json.dumps(info, indent=2) + "\n")
    return Kit(root, recipe, seconds)


def _write_data(folder: Path, pairs: Sequence[QAPair]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    eval_rows = [{"id": p.id, "prompt": p.question, "response": p.answer} for p in pairs]
    prompt_rows = [
        {"id": p.id, "prompt": p.question, "reference": p.answer, "category": p.category}
        for p in pairs
    ]
    for name, rows in (("eval.jsonl", eval_rows), ("prompts.jsonl", prompt_rows)):
        atomic_write_text(folder / name, "".join(json.dumps(r) + "\n" for r in rows))


def chat_example(tokenizer: Any, question: str, answer: str) -> tuple[list[int], int]:
    """Token ids of a chat-formatted question + answer, and where the answer starts.

    The same ids the backends score for perplexity, so the sidecar's eval loss and
    ``evalharness ppl`` measure the same thing.
    """
    scoring = scoring_ids(tokenizer, answer, (Message(role="user", content=question),))
    return scoring.ids, scoring.start


def build_tokenizer(folder: Path, text: DemoText, recipe: BaseRecipe) -> Any:
    """Train a byte-level BPE tokenizer with chat special tokens and save it to ``folder``."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=recipe.vocab_size,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    samples = list(text.corpus) + [
        f"{p.question} {p.answer}" for p in text.train_qa + text.eval_qa + text.generic_qa
    ]
    bpe.train_from_iterator(samples, trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=bpe,
        bos_token="<|bos|>",
        eos_token="<|end|>",
        pad_token="<|pad|>",
        additional_special_tokens=["<|system|>", "<|user|>", "<|assistant|>"],
        model_max_length=recipe.context,
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    tokenizer.save_pretrained(str(folder))
    return tokenizer


def _pretraining_ids(tokenizer: Any, text: DemoText) -> list[int]:
    ids: list[int] = []
    for sentence in text.corpus:
        ids += [tokenizer.bos_token_id, *tokenizer(sentence, add_special_tokens=False)["input_ids"]]
    # A few generic chat exchanges teach the base model the turn format (so the baseline
    # answers, badly), without the facts-as-answers the adapters learn.
    for pair in text.generic_qa:
        example, _ = chat_example(tokenizer, pair.question, pair.answer)
        ids += example * 4
    return ids


def pretrain_base(folder: Path, tokenizer: Any, text: DemoText, recipe: BaseRecipe,
                  progress: Progress | None = None) -> None:
    """Pretrain a tiny Llama on the corpus and save it (float32 safetensors) to ``folder``."""
    import torch
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    torch.manual_seed(recipe.seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=recipe.hidden_size,
        intermediate_size=recipe.intermediate_size,
        num_hidden_layers=recipe.layers,
        num_attention_heads=recipe.heads,
        num_key_value_heads=recipe.heads,
        max_position_embeddings=recipe.context,
        tie_word_embeddings=False,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        dtype="float32",
    )
    model = LlamaForCausalLM(config)
    stream = torch.tensor(_pretraining_ids(tokenizer, text))
    window = 128
    generator = torch.Generator().manual_seed(recipe.seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=recipe.learning_rate, weight_decay=0.0)
    steps = recipe.pretrain_steps
    # Linear warm-up over 20 steps, then linear decay to 5% of the peak rate.
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: min(1.0, (step + 1) / 20) * max(0.05, 1 - step / steps)
    )
    model.train()
    if progress is not None:
        progress.start("kit: pretraining the base model", recipe.pretrain_steps)
    for _ in range(recipe.pretrain_steps):
        starts = torch.randint(0, len(stream) - window - 1, (recipe.batch_size,),
                               generator=generator)
        batch = torch.stack([stream[s : s + window] for s in starts.tolist()])
        loss = model(input_ids=batch, labels=batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        optimizer.zero_grad()
        if progress is not None:
            progress.advance()
    model.eval()
    model.generation_config = GenerationConfig(
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        do_sample=False,
    )
    model.save_pretrained(str(folder), safe_serialization=True)


def _qa_batches(tokenizer: Any, pairs: Sequence[QAPair], batch_size: int, order: list[int]
                ) -> list[tuple[Any, Any, Any]]:
    import torch

    batches = []
    for first in range(0, len(order), batch_size):
        examples = [chat_example(tokenizer, pairs[i].question, pairs[i].answer)
                    for i in order[first : first + batch_size]]
        width = max(len(ids) for ids, _ in examples)
        input_ids = torch.full((len(examples), width), tokenizer.pad_token_id)
        labels = torch.full((len(examples), width), -100)
        mask = torch.zeros((len(examples), width), dtype=torch.long)
        for row, (ids, answer_start) in enumerate(examples):
            input_ids[row, : len(ids)] = torch.tensor(ids)
            labels[row, answer_start : len(ids)] = torch.tensor(ids[answer_start:])
            mask[row, : len(ids)] = 1
        batches.append((input_ids, mask, labels))
    return batches


def _mean_loss(model: Any, batches: list[tuple[Any, Any, Any]]) -> float:
    import torch

    total, count = 0.0, 0
    with torch.no_grad():
        for input_ids, mask, labels in batches:
            n = int((labels[:, 1:] != -100).sum())
            total += float(model(input_ids=input_ids, attention_mask=mask, labels=labels).loss) * n
            count += n
    return total / max(count, 1)


def train_adapter(base: Path, out: Path, recipe: AdapterRecipe, text: DemoText | None = None
                  ) -> Path:
    """Train a LoRA adapter on the kit's training questions and save it in PEFT format.

    ``epochs=0`` saves peft's default initialisation, whose ``lora_B`` is zero: an adapter
    that changes nothing (the case a serving self-check must catch).
    """
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    text = text or demo_text()
    torch.manual_seed(recipe.seed)
    tokenizer = AutoTokenizer.from_pretrained(str(base))
    model = AutoModelForCausalLM.from_pretrained(str(base), dtype=torch.float32)
    config = LoraConfig(
        r=recipe.r,
        lora_alpha=recipe.alpha,
        target_modules=list(recipe.target_modules),
        lora_dropout=0.0,
        task_type="CAUSAL_LM",
    )
    peft_model = get_peft_model(model, config)
    generator = torch.Generator().manual_seed(recipe.seed)
    eval_batches = _qa_batches(tokenizer, text.eval_qa, 16, list(range(len(text.eval_qa))))
    optimizer = torch.optim.AdamW(
        [p for p in peft_model.parameters() if p.requires_grad], lr=recipe.learning_rate
    )
    train_loss = float("nan")
    peft_model.train()
    for _ in range(recipe.epochs):
        order = torch.randperm(len(text.train_qa), generator=generator).tolist()
        losses = []
        for input_ids, mask, labels in _qa_batches(tokenizer, text.train_qa, recipe.batch_size,
                                                   order):
            loss = peft_model(input_ids=input_ids, attention_mask=mask, labels=labels).loss
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
            losses.append(loss.item())
        train_loss = sum(losses) / len(losses)
    peft_model.eval()
    eval_loss = _mean_loss(peft_model, eval_batches)
    out.mkdir(parents=True, exist_ok=True)
    peft_model.save_pretrained(str(out), safe_serialization=True)
    sidecar = {
        "learning_rate": recipe.learning_rate,
        "epochs": recipe.epochs,
        "r": recipe.r,
        "lora_alpha": recipe.alpha,
        "target_modules": list(recipe.target_modules),
        "seed": recipe.seed,
        "train_loss": train_loss,
        "eval_loss": eval_loss,
    }
    atomic_write_text(out / SIDECAR, json.dumps(sidecar, indent=2) + "\n")
    return out
