"""A small decoder-only character-level transformer, trained on Python's own standard library.

Run: pip install -e . && python examples/char_transformer.py
(quick run: ``--steps 20``; ``--help`` lists the sizes)

The text is read at run time from this interpreter's standard library (``FILES``, found
next to ``os.py``; a file that is missing is skipped): about 480 kB of Python source. Each
file's first 90% goes to training, its last 10% to validation. Characters outside ASCII
become ``?``.

The model: token and learned position embeddings; ``--layers`` blocks of causal
self-attention (``F.scaled_dot_product_attention(..., is_causal=True)``) and a GELU MLP,
each behind a LayerNorm (pre-norm) and a residual connection; a final LayerNorm and a
linear head (``--tie``: the token embedding as the head's weight). Trained with
``optim.AdamW`` and a cosine learning-rate schedule with warm-up, on random windows of
``--context`` characters.

Measured (the defaults: 3 layers, width 96, 4 heads, context 64, batch 32, 1500 steps;
360,384 parameters): validation loss 1.244 nats per character (from 4.6; 1.33 at step 1000),
in 254 s and in 408 s (two runs, the same losses) on 2 cores shared with other jobs
(Python 3.11, NumPy 2.4 with OpenBLAS, ``OPENBLAS_NUM_THREADS=1``); 4 min 17 s in all with
the sampling. Where other processes compete for the cores, ``OPENBLAS_NUM_THREADS=1``
keeps BLAS threads from spinning against each other, which made matrix products 10 to 100
times slower in our measurements.

The imperative path (Modules, ``loss.backward()``, ``optimizer.step()``) is used: a
``neuronika.jit`` step over the same model written functionally gave the same losses at
about the same speed (the time goes into NumPy's matrix products).
"""
import argparse
import os
import time

import numpy as np

import neuronika
from _plot import add_plot_option, report, save_curve           # examples/_plot.py
from neuronika import nn, optim
from neuronika.nn import functional as F

FILES = ["argparse.py", "calendar.py", "contextlib.py", "copy.py", "dataclasses.py", "fractions.py",
         "functools.py", "heapq.py", "random.py", "shutil.py", "string.py", "textwrap.py",
         "threading.py"]


def read_corpus(paths):
    """(training text, validation text): the first 90% of each file, and the rest."""
    train, validation = [], []
    for path in paths:
        with open(path, encoding="utf-8", errors="replace") as file:
            text = file.read().encode("ascii", "replace").decode("ascii")
        cut = int(0.9 * len(text))
        train.append(text[:cut])
        validation.append(text[cut:])
    return "".join(train), "".join(validation)


class Block(nn.Module):
    """x + attention(LayerNorm(x)), then x + MLP(LayerNorm(x)), on (batch, time, width)."""

    def __init__(self, width, heads):
        super().__init__()
        self.heads = heads
        self.ln_1 = nn.LayerNorm(width)
        self.qkv = nn.Linear(width, 3 * width)
        self.proj = nn.Linear(width, width)
        self.ln_2 = nn.LayerNorm(width)
        self.fc = nn.Linear(width, 4 * width)
        self.out = nn.Linear(4 * width, width)

    def forward(self, x):
        batch, time_, width = x.shape
        qkv = self.qkv(self.ln_1(x)).reshape(batch, time_, 3, self.heads, width // self.heads)
        q, k, v = qkv.transpose(2, 0, 3, 1, 4)                   # each (batch, heads, time, width / heads)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.proj(y.transpose(0, 2, 1, 3).reshape(batch, time_, width))
        return x + self.out(F.gelu(self.fc(self.ln_2(x))))


class CharTransformer(nn.Module):
    """Embeddings (token + position), ``layers`` blocks, a final LayerNorm and the head."""

    def __init__(self, vocabulary, context, width, layers, heads, tie=False):
        super().__init__()
        self.context = context
        self.tie = tie
        self.token = nn.Embedding(vocabulary, width)
        self.position = nn.Embedding(context, width)
        for table in (self.token.weight, self.position.weight):
            nn.init.normal_(table, std=0.02)
        self.blocks = nn.ModuleList(Block(width, heads) for _ in range(layers))
        self.ln_f = nn.LayerNorm(width)
        if not tie:
            self.head = nn.Linear(width, vocabulary)

    def forward(self, indices):
        """Logits (batch, time, vocabulary) for integer indices (batch, time)."""
        x = self.token(indices) + self.position(np.arange(indices.shape[1]))
        for block in self.blocks:
            x = block(x)
        x = self.ln_f(x)
        return F.linear(x, self.token.weight) if self.tie else self.head(x)


def windows(data, starts, context):
    """Inputs and next-character targets (len(starts), context) from windows of ``data``."""
    rows = starts[:, None] + np.arange(context + 1)
    chunk = data[rows]
    return chunk[:, :-1], chunk[:, 1:]


def evaluate(model, data, context, batch, batches):
    """Mean cross-entropy over ``batches`` fixed batches spread evenly over ``data``."""
    model.eval()
    starts = np.linspace(0, len(data) - context - 1, batches * batch).astype(np.int64)
    total = 0.0
    with neuronika.no_grad():
        for first in range(0, len(starts), batch):
            x, y = windows(data, starts[first:first + batch], context)
            logits = model(x)
            total += F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1)).item()
    model.train()
    return total / batches


def sample(model, prompt, length, encode, decode, temperature, rng):
    """``length`` characters after ``prompt``, drawn one at a time."""
    model.eval()
    indices = list(encode(prompt))
    with neuronika.no_grad():
        for _ in range(length):
            window = np.array([indices[-model.context:]])
            logits = model(window).data[0, -1].astype(np.float64) / temperature
            probabilities = np.exp(logits - logits.max())
            indices.append(int(rng.choice(len(probabilities), p=probabilities / probabilities.sum())))
    model.train()
    return decode(indices)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--layers", type=int, default=3)
    parser.add_argument("--width", type=int, default=96)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--context", type=int, default=64)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--tie", action="store_true", help="use the token embedding as the output head")
    parser.add_argument("--eval-every", type=int, default=100)
    parser.add_argument("--eval-batches", type=int, default=16)
    parser.add_argument("--sample", type=int, default=400, help="characters to sample after training")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--text", nargs="+", metavar="FILE",
                        help="train on these text files instead of the standard library's")
    add_plot_option(parser, "char_transformer")
    args = parser.parse_args(argv)
    for name in ("steps", "layers", "width", "heads", "context", "batch", "eval_every", "eval_batches"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    if args.width % args.heads:
        parser.error(f"--width ({args.width}) must be a multiple of --heads ({args.heads})")
    start = time.perf_counter()

    if args.text:
        paths = args.text
    else:
        library = os.path.dirname(os.__file__)
        paths = [os.path.join(library, name) for name in FILES if os.path.isfile(os.path.join(library, name))]
    train_text, validation_text = read_corpus(paths)
    alphabet = sorted(set(train_text + validation_text))
    code = {c: i for i, c in enumerate(alphabet)}
    encode = lambda text: np.array([code.get(c, code.get("?", 0)) for c in text], np.int64)   # noqa: E731
    decode = lambda indices: "".join(alphabet[i] for i in indices)                           # noqa: E731
    train, validation = encode(train_text), encode(validation_text)
    if len(validation) <= args.context + 1:
        parser.error(f"the text is too short for --context {args.context}: {len(validation)} validation "
                     f"characters (10% of each file)")
    print(f"{len(paths)} files: {len(train):,} training and {len(validation):,} validation characters, "
          f"{len(alphabet)} symbols")

    neuronika.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    model = CharTransformer(len(alphabet), args.context, args.width, args.layers, args.heads, args.tie)
    print(f"{sum(p.data.size for p in model.parameters()):,} parameters")
    optimizer = optim.AdamW(model.parameters(), lr=args.lr, betas=(0.9, 0.99), weight_decay=0.1)
    warmup = max(1, min(100, args.steps // 10))
    scheduler = optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: (s + 1) / warmup if s < warmup
        else 0.1 + 0.45 * (1 + np.cos(np.pi * (s - warmup) / max(1, args.steps - warmup))))

    curve, evaluated = ([], []), ([], [])
    for step in range(1, args.steps + 1):
        x, y = windows(train, rng.integers(0, len(train) - args.context - 1, args.batch), args.context)
        logits = model(x)
        loss = F.cross_entropy(logits.reshape(-1, len(alphabet)), y.reshape(-1))
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        scheduler.step()
        curve[0].append(step)
        curve[1].append(loss.item())
        if step <= 5 or step % args.eval_every == 0 or step == args.steps:
            line = f"step {step:5d}  train loss {curve[1][-1]:.4f}"
            if step % args.eval_every == 0 or step == args.steps:
                evaluated[0].append(step)
                evaluated[1].append(evaluate(model, validation, args.context, args.batch, args.eval_batches))
                line += f"  validation loss {evaluated[1][-1]:.4f}  ({time.perf_counter() - start:.0f} s)"
            print(line)

    print(f"final validation loss {evaluated[1][-1]:.4f} after {args.steps} steps "
          f"in {time.perf_counter() - start:.1f} s")
    if args.sample:
        text = sample(model, "def ", args.sample, encode, decode, 0.8, rng)
        print("---- sample ----")
        print(text)
        print("----------------")
    report(save_curve(args.plot, {"training (per step)": curve, "validation": evaluated},
                      ylabel="cross-entropy (nats per character)", title="char_transformer.py"))


if __name__ == "__main__":
    main()
