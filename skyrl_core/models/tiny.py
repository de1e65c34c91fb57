"""Build a tiny Hugging Face model + tokenizer folder locally (no model hub needed).

The folder holds ``config.json``, ``generation_config.json``, ``model.safetensors``, the
tokenizer files and a ChatML chat template, and loads with ``AutoModelForCausalLM`` /
``AutoTokenizer`` under ``HF_HUB_OFFLINE=1``::

    from skyrl_core.config.schema import TinyModelConfig
    from skyrl_core.models.tiny import build_tiny_model

    path = build_tiny_model("models/tiny", TinyModelConfig(hidden_size=64, layers=2))

Why the tokenizer is built the way it is: transformers 5.x does not load a saved
``tokenizer.json`` as is. ``AutoTokenizer`` picks the model family's tokenizer class from
``config.json`` (``Qwen2Tokenizer``, ``LlamaTokenizer``), keeps only the vocabulary, the
merges and the post-processor from the file, and rebuilds the normaliser, pre-tokenizer
and decoder itself. A BPE trained with any other pre-tokenizer then gives different ids.
So the saved tokenizer uses exactly the family's pipeline (mirrored below), and merges
are learned so that digits stay single tokens (Qwen2's regex already isolates digits; for
Llama the training pre-tokenizer isolates them).
"""

from __future__ import annotations

import json
import os
import random
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

import attrs

from skyrl_core.config.schema import ModelConfig, TinyModelConfig
from skyrl_core.errors import SkyrlError

PAD_TOKEN = "<|endoftext|>"
IM_START = "<|im_start|>"
IM_END = "<|im_end|>"
SPECIAL_TOKENS = (PAD_TOKEN, IM_START, IM_END)

#: ChatML with ``add_generation_prompt`` support (the template Qwen models use, without tools).
CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)

# Qwen2's pre-tokenizer regex (transformers.models.qwen2.tokenization_qwen2.PRETOKENIZE_REGEX).
QWEN2_PRETOKENIZE_REGEX = (
    r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"""
    r"""|\s*[\r\n]+|\s+(?!\S)|\s+"""
)


class ModelNotFoundError(SkyrlError):
    """A model folder does not exist and nothing says how to create it."""


# -- corpus ---------------------------------------------------------------------------------

_QUESTION_FORMS = (
    "What is {a} {op} {b}?",
    "Compute {a} {op} {b}.",
    "Calculate {a} {op} {b}.",
    "Solve: {a} {op} {b} = ?",
    "What is the value of {a} {op} {b}?",
    "Find {a} {op} {b}.",
)
_INSTRUCTIONS = (
    "Put your final answer in \\boxed{{}}.",
    "Give the answer in \\boxed{{}}.",
    "Answer with a number.",
    "Think step by step, then write the answer in \\boxed{{}}.",
    "",
)
_ANSWER_FORMS = (
    "{a} {op} {b} = {c}. The answer is \\boxed{{{c}}}.",
    "\\boxed{{{c}}}",
    "Answer: {c}",
    "Let me think step by step. {a} {op} {b} = {c}. So the answer is \\boxed{{{c}}}.",
    "We have {a} {op} {b} = {c}.\n#### {c}",
    "The result is {c}. Final answer: \\boxed{{{c}}}",
)
_SYSTEM_PROMPTS = (
    "You are a helpful assistant.",
    "You are a careful math tutor. Show your work and put the final answer in \\boxed{}.",
    "You are a helpful assistant that answers questions about a SQL database.",
)
_EXTRA_LINES = (
    "SELECT name, COUNT(*) FROM users WHERE age > 30 GROUP BY name ORDER BY name;",
    "<think> I need to add the numbers first. </think> <answer> 42 </answer>",
    "<sql> SELECT * FROM orders LIMIT 5 </sql>",
    "The observation is: the table has 3 rows.",
    "Correct! Your answer is right. Wrong answer, please try again.",
    "Question: how many apples are left? Answer: there are 7 apples left.",
)
_OPS = {"+": lambda a, b: a + b, "-": lambda a, b: a - b, "*": lambda a, b: a * b}


def arithmetic_corpus(n: int = 3000, seed: int = 0) -> Iterator[str]:
    """Yield ``n`` lines of arithmetic-task text: questions, worked answers, ChatML turns.

    Covers the quickstart task's wording (``What is 12 + 7?``, ``\\boxed{19}``), GSM8K-style
    ``#### 19`` answers, ChatML role headers, and a few SQL/tool lines, so that common RL
    prompts tokenize compactly.
    """
    rng = random.Random(seed)
    for i in range(n):
        a, b = rng.randint(0, 999), rng.randint(0, 99 if rng.random() < 0.5 else 999)
        op = rng.choice(tuple(_OPS))
        c = _OPS[op](a, b)
        question = rng.choice(_QUESTION_FORMS).format(a=a, op=op, b=b)
        instruction = rng.choice(_INSTRUCTIONS).format()
        answer = rng.choice(_ANSWER_FORMS).format(a=a, op=op, b=b, c=c)
        kind = i % 4
        if kind == 0:
            system = rng.choice(_SYSTEM_PROMPTS)
            yield (
                f"{IM_START}system\n{system}{IM_END}\n"
                f"{IM_START}user\n{question} {instruction}{IM_END}\n"
                f"{IM_START}assistant\n{answer}{IM_END}\n"
            )
        elif kind == 1:
            yield f"{IM_START}user\n{question}{IM_END}\n{IM_START}assistant\n{answer}{IM_END}\n"
        elif kind == 2:
            yield f"{question} {instruction}\n{answer}"
        else:
            yield rng.choice(_EXTRA_LINES) if rng.random() < 0.3 else f"{a} {op} {b} = {c}"


def _read_corpus(spec: str) -> list[str]:
    path = Path(spec)
    if not path.is_file():
        raise SkyrlError(
            f"[model.tiny] corpus = {spec!r}: no such file. Use 'arithmetic' for the built-in "
            "corpus or give the path of a UTF-8 text file."
        )
    return path.read_text(encoding="utf-8").splitlines()


def _strip_special(lines: Iterable[str]) -> Iterator[str]:
    """Drop special-token markers so that no merges are wasted on them (they are added tokens)."""
    for line in lines:
        for marker in SPECIAL_TOKENS:
            line = line.replace(marker, "\n")
        yield line


# -- tokenizer ------------------------------------------------------------------------------


def _train_tokenizer(arch: str, lines: list[str], vocab_size: int):
    """Train a BPE and return a ``tokenizers.Tokenizer`` with the family's exact pipeline."""
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

    if arch == "qwen2":
        # Mirrors transformers' Qwen2Tokenizer.__init__ (byte-level BPE, NFC, regex split).
        normalizer = normalizers.NFC()
        pre_tokenizer = pre_tokenizers.Sequence(
            [
                pre_tokenizers.Split(Regex(QWEN2_PRETOKENIZE_REGEX), behavior="isolated", invert=False),
                pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
            ]
        )
        train_pre_tokenizer = pre_tokenizer
        alphabet = pre_tokenizers.ByteLevel.alphabet()
        decoder = decoders.ByteLevel()
    elif arch == "llama":
        # Mirrors transformers' LlamaTokenizer.__init__ (SentencePiece-style BPE with byte
        # fallback, Metaspace, legacy=False so the prefix space goes on the first piece only).
        normalizer = None
        pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first", split=False)
        # Training splits words and isolates digits so that merges never contain a digit.
        train_pre_tokenizer = pre_tokenizers.Sequence(
            [
                pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first", split=True),
                pre_tokenizers.Digits(individual_digits=True),
            ]
        )
        alphabet = []
        decoder = decoders.Sequence(
            [decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(), decoders.Strip(content=" ", left=1)]
        )
    else:
        raise SkyrlError(f"[model.tiny] arch = {arch!r}: unknown architecture; use 'qwen2' or 'llama'.")

    trainer_tok = Tokenizer(models.BPE())
    if normalizer is not None:
        trainer_tok.normalizer = normalizer
    trainer_tok.pre_tokenizer = train_pre_tokenizer
    byte_tokens = [f"<0x{i:02X}>" for i in range(256)] if arch == "llama" else []
    trainer = trainers.BpeTrainer(
        vocab_size=max(vocab_size - len(byte_tokens), len(SPECIAL_TOKENS) + len(alphabet) + 1),
        min_frequency=2,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=alphabet,
        show_progress=False,
    )
    trainer_tok.train_from_iterator(lines, trainer=trainer)
    trained = json.loads(trainer_tok.to_str())["model"]
    # Vocabulary: special tokens, then (Llama) the 256 byte-fallback tokens, then the rest.
    vocab: dict[str, int] = {}
    for token in [*SPECIAL_TOKENS, *byte_tokens, *sorted(trained["vocab"], key=trained["vocab"].get)]:
        vocab.setdefault(token, len(vocab))
    merges = [tuple(m.split(" ", 1)) if isinstance(m, str) else tuple(m) for m in trained["merges"]]

    if arch == "qwen2":
        model = models.BPE(
            vocab=vocab, merges=merges, dropout=None, unk_token=None, continuing_subword_prefix="",
            end_of_word_suffix="", fuse_unk=False, byte_fallback=False,
        )  # fmt: skip
    else:
        model = models.BPE(vocab=vocab, merges=merges, fuse_unk=True, byte_fallback=True, dropout=None)
    tok = Tokenizer(model)
    if normalizer is not None:
        tok.normalizer = normalizer
    tok.pre_tokenizer = pre_tokenizer
    tok.decoder = decoder
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in SPECIAL_TOKENS])
    return tok


# -- model ----------------------------------------------------------------------------------


def _model_config(cfg: TinyModelConfig, vocab_size: int, eos_id: int, pad_id: int):
    common = dict(
        vocab_size=vocab_size,
        hidden_size=cfg.hidden_size,
        intermediate_size=cfg.intermediate_size,
        num_hidden_layers=cfg.layers,
        num_attention_heads=cfg.heads,
        num_key_value_heads=cfg.kv_heads,
        max_position_embeddings=4096,
        tie_word_embeddings=True,
        bos_token_id=None,
        eos_token_id=eos_id,
        pad_token_id=pad_id,
    )
    if cfg.hidden_size % cfg.heads or cfg.heads % cfg.kv_heads:
        raise SkyrlError(
            f"[model.tiny]: hidden_size ({cfg.hidden_size}) must be divisible by heads ({cfg.heads}) "
            f"and heads by kv_heads ({cfg.kv_heads})."
        )
    if cfg.arch == "qwen2":
        from transformers import Qwen2Config

        return Qwen2Config(**common)
    from transformers import LlamaConfig

    return LlamaConfig(**common)


def build_tiny_model(
    out_dir: str | os.PathLike[str],
    cfg: TinyModelConfig,
    corpus: Iterable[str] | None = None,
    seed: int = 0,
    *,
    overwrite: bool = False,
) -> Path:
    """Create a tiny random model + trained BPE tokenizer folder at ``out_dir``.

    Args:
        out_dir: the folder to create (written to a temporary sibling, then renamed).
        cfg: architecture and tokenizer sizes (``[model.tiny]``).
        corpus: lines to train the tokenizer on; None uses ``cfg.corpus`` ('arithmetic' is
            the built-in generator, anything else a text file path).
        seed: seeds the weight initialisation and the built-in corpus.
        overwrite: replace an existing folder instead of raising.

    Returns:
        The folder path. ``AutoTokenizer.from_pretrained(path)`` gives the same ids as the
        trained tokenizer; the model's vocabulary size equals the tokenizer's length.
    """
    import torch
    from transformers import AutoModelForCausalLM, GenerationConfig, PreTrainedTokenizerFast

    out = Path(out_dir)
    if out.exists() and not overwrite:
        raise SkyrlError(f"{out}: already exists; refusing to overwrite it with a tiny model (pass overwrite=True).")
    if corpus is None:
        corpus = arithmetic_corpus(seed=seed) if cfg.corpus == "arithmetic" else _read_corpus(cfg.corpus)
    lines = list(_strip_special(corpus))
    tok = _train_tokenizer(cfg.arch, lines, cfg.vocab_size)
    vocab_size = tok.get_vocab_size(with_added_tokens=True)
    eos_id, pad_id = tok.token_to_id(IM_END), tok.token_to_id(PAD_TOKEN)

    hf_tok = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=None,
        eos_token=IM_END,
        pad_token=PAD_TOKEN,
        unk_token=None,
        chat_template=CHATML_TEMPLATE,
        padding_side="left",
        add_bos_token=False,
        add_eos_token=False,
        add_prefix_space=cfg.arch == "llama",
        legacy=False,
        clean_up_tokenization_spaces=False,
        model_max_length=4096,
    )
    model_cfg = _model_config(cfg, vocab_size, eos_id, pad_id)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = AutoModelForCausalLM.from_config(model_cfg, dtype=torch.float32)
    model.generation_config = GenerationConfig(eos_token_id=eos_id, pad_token_id=pad_id, bos_token_id=None)

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        model.save_pretrained(tmp)
        hf_tok.save_pretrained(tmp)
        # Record how the folder was made (for humans and for `ensure_model` diagnostics).
        meta = {"builder": "skyrl_core.models.tiny", "seed": seed, **attrs.asdict(cfg)}
        (tmp / "skyrl_tiny.json").write_text(json.dumps(meta, indent=2) + "\n")
        if overwrite and out.exists():
            shutil.rmtree(out)
        os.rename(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def could_be_hub_id(name: str) -> bool:
    """True when ``name`` may be a model hub id (``org/name`` or ``name``) and the hub is not disabled."""
    if os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes"):
        return False
    return not name.startswith((".", "/", "~")) and name.count("/") <= 1 and not name.endswith("/")


def ensure_model(model_cfg: ModelConfig) -> Path:
    """Return ``model_cfg.path``, building a tiny model there first if it is missing and ``tiny`` is set.

    A missing path that may be a hub id (``org/name``) is returned unchanged for
    transformers to resolve, unless ``HF_HUB_OFFLINE`` is set.

    Raises:
        ModelNotFoundError: the path does not exist, is no hub id, and ``[model.tiny]`` is not set.
    """
    path = Path(model_cfg.path).expanduser()
    if path.exists():
        return path
    if model_cfg.tiny is None and could_be_hub_id(model_cfg.path):
        return Path(model_cfg.path)  # transformers resolves it (and says so if the hub is unreachable)
    if model_cfg.tiny is None:
        raise ModelNotFoundError(
            f"[model] path = {model_cfg.path!r}: no such folder. Point `path` at a Hugging Face model "
            "folder, or add a [model.tiny] table to build a tiny local model there "
            '(e.g. `[model.tiny]` with `arch = "qwen2"`).'
        )
    try:
        build_tiny_model(path, model_cfg.tiny)
    except (OSError, SkyrlError):
        # Another process (e.g. a Ray worker) may have finished the same folder first.
        if not (path / "config.json").exists():
            raise
    return path
