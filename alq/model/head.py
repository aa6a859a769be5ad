"""A head: a linear or one-hidden-layer MLP classifier on pool embeddings.

The head file is a ``torch.save`` of plain tensors and a JSON string, so it
loads with ``torch.load(weights_only=True)``: no pickled code runs. It carries
the class names in alq's stable order, the input dimension, the input
normalisation (inside the network as buffers), the pool fingerprint it was
trained on, training metrics, the alq version and its own fingerprint (a hash
of the weights and class list, checked on load; scores files and selections
record it so a stale derived file is recognised).

An ensemble (``alq train --ensemble K``) stores K members; ``net`` (member 0,
trained on every training row) is the head every strategy uses, ``nets`` (all
K) feed BALD. ``--dropout p`` puts a dropout layer at the input of the last
linear layer (after the hidden layer of an MLP, on the normalised input of a
linear head); :meth:`HeadNet.mc_logits` samples it with a seeded generator
for MC dropout (Gal & Ghahramani 2016).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from alq import __version__
from alq.errors import BadInputError
from alq.io import atomic_path

FORMAT = "alq-head"
VERSION = 1
NORMALIZE = (None, "standardize", "l2")


class HeadNet(nn.Module):
    """normalise -> [Linear -> ReLU] -> [Dropout] -> Linear (``out``).

    ``features(x)`` is the input of the last linear layer: the space in which
    MASE/BASE distances and BADGE gradient embeddings are defined (Emam et
    al. 2021: for an MLP head, the input space of its last linear layer).
    Input ``x``: (n, dim), any float dtype; output logits (n, n_classes).
    """

    def __init__(self, dim: int, n_classes: int, *, hidden: int = 0, dropout: float = 0.0,
                 normalize: str | None = None):
        super().__init__()
        if normalize not in NORMALIZE:
            raise BadInputError(f"normalize={normalize!r} must be one of standardize, l2 or none")
        if not 0.0 <= dropout < 1.0:
            raise BadInputError(f"dropout={dropout} must be in [0, 1)")
        self.dim, self.n_classes, self.hidden, self.dropout_p, self.normalize = dim, n_classes, hidden, dropout, normalize
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("scale", torch.ones(dim))
        if hidden > 0:
            self.body = nn.Sequential(nn.Linear(dim, hidden), nn.ReLU(), nn.Dropout(dropout))
            self.out = nn.Linear(hidden, n_classes)
        else:
            # A parameter-free dropout keeps state dicts identical with and without it.
            self.body = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
            self.out = nn.Linear(dim, n_classes)

    def prepare(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(self.out.weight.dtype)
        if self.normalize == "l2":
            x = torch.nn.functional.normalize(x, dim=1)
        elif self.normalize == "standardize":
            x = (x - self.mean) / self.scale
        return x

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Input of the last linear layer, shape (n, hidden or dim)."""
        return self.body(self.prepare(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.features(x))

    @torch.no_grad()
    def mc_logits(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """One MC-dropout sample of the logits, the mask drawn from ``generator`` (CPU).

        Same generator state -> same mask, so BALD is deterministic for a seed.
        Without dropout (p = 0) this is the plain forward pass.
        """
        was_training = self.training
        self.eval()
        try:
            f = self.features(x)
        finally:
            self.train(was_training)
        p = self.dropout_p
        if p <= 0:
            return self.out(f)
        keep = torch.rand(f.shape, generator=generator) >= p
        return self.out(f * keep.to(device=f.device, dtype=f.dtype) / (1.0 - p))


def net_fingerprint(nets: list[HeadNet], classes: list, multilabel: bool) -> str:
    """Hash of every member's tensors (bytes, dtype, shape) plus the class list."""
    h = hashlib.sha256(json.dumps({"classes": [str(c) for c in classes], "types": [type(c).__name__ for c in classes],
                                   "multilabel": bool(multilabel)}, sort_keys=True).encode())
    for net in nets:
        h.update(json.dumps({"hidden": net.hidden, "dropout": net.dropout_p, "normalize": net.normalize}).encode())
        for key, value in sorted(net.state_dict().items()):
            arr = np.ascontiguousarray(value.detach().cpu().numpy())
            h.update(f"|{key}:{arr.dtype}:{arr.shape}|".encode())
            h.update(arr.tobytes())
    return h.hexdigest()[:16]


@dataclass
class Head:
    nets: list[HeadNet]
    classes: list
    multilabel: bool = False
    meta: dict = field(default_factory=dict)

    def __post_init__(self):
        # Plain Python class names (JSON round trip keeps int and str; numpy scalars become them).
        self.classes = [c.item() if hasattr(c, "item") else c for c in self.classes]

    @property
    def net(self) -> HeadNet:
        return self.nets[0]

    @property
    def dim(self) -> int:
        return self.net.dim

    @property
    def n_classes(self) -> int:
        return len(self.classes)

    @property
    def fingerprint(self) -> str:
        """Identity of the weights and classes (computed when missing)."""
        fp = self.meta.get("fingerprint")
        if not fp:
            fp = self.meta["fingerprint"] = net_fingerprint(self.nets, self.classes, self.multilabel)
        return fp

    @property
    def pool_fingerprint(self) -> str | None:
        return self.meta.get("pool_fingerprint")

    def to(self, device) -> Head:
        for n in self.nets:
            n.to(device)
        return self

    @torch.no_grad()
    def logits(self, x: torch.Tensor) -> torch.Tensor:
        self.net.eval()
        return self.net(x)

    @torch.no_grad()
    def probs(self, x: torch.Tensor) -> torch.Tensor:
        z = self.logits(x)
        return torch.sigmoid(z) if self.multilabel else torch.softmax(z, dim=1)

    def check_pool(self, pool, *, path: str = "head") -> None:
        """Refuse a head trained on a different embedding dimension."""
        if pool.dim != self.dim:
            raise BadInputError(f"{path}: head expects dim {self.dim} but the pool has dim {pool.dim}",
                                hint="train a head on this pool with `alq train`")

    def check_classes(self, classes: list, *, path: str = "head") -> None:
        """Refuse labels that hold classes this head was not trained on."""
        known = set(self.classes)
        unknown = [c for c in classes if c not in known]
        if unknown:
            raise BadInputError(f"{path}: labels have {len(unknown)} classes the head was not trained on "
                                f"(e.g. {', '.join(map(repr, unknown[:5]))})",
                                hint="retrain with `alq train` on the current labels")

    def save(self, path: str | Path) -> None:
        meta = dict(self.meta)
        meta.update(classes=self.classes, multilabel=self.multilabel, dim=self.dim,
                    hidden=self.net.hidden, dropout=self.net.dropout_p, normalize=self.net.normalize,
                    ensemble=len(self.nets), alq_version=meta.get("alq_version", __version__),
                    fingerprint=net_fingerprint(self.nets, self.classes, self.multilabel))
        self.meta["fingerprint"] = meta["fingerprint"]
        payload = {"format": FORMAT, "version": VERSION, "meta": json.dumps(meta, default=str),
                   "state_dicts": [{k: v.detach().cpu() for k, v in n.state_dict().items()} for n in self.nets]}
        with atomic_path(path, suffix=".pt") as tmp:
            torch.save(payload, tmp)


def load_head(path: str | Path, *, device=None) -> Head:
    """Load a head file safely (``weights_only=True``); bad files are a clear error."""
    p = Path(path)
    if not p.exists():
        raise BadInputError(f"{p}: head file not found", hint="train one with `alq train`")
    try:
        payload = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for corrupt files
        why = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:160]
        raise BadInputError(f"{p}: not a readable alq head file ({why})") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise BadInputError(f"{p}: not an alq head file")
    if payload.get("version") != VERSION:
        raise BadInputError(f"{p}: head format version {payload.get('version')} not supported", hint="upgrade alq")
    try:
        meta = json.loads(payload["meta"])
        dim, classes = int(meta["dim"]), list(meta["classes"])
        state_dicts = list(payload["state_dicts"])
    except (KeyError, TypeError, ValueError) as exc:
        raise BadInputError(f"{p}: malformed alq head file ({exc})") from None
    if not state_dicts:
        raise BadInputError(f"{p}: head file holds no networks")
    nets = []
    for sd in state_dicts:
        net = HeadNet(dim, len(classes), hidden=int(meta.get("hidden", 0)),
                      dropout=float(meta.get("dropout", 0.0)), normalize=meta.get("normalize"))
        try:
            net.load_state_dict(sd)
        except RuntimeError as exc:
            raise BadInputError(f"{p}: weights do not match the head's metadata ({str(exc).splitlines()[0][:160]})") from None
        net.eval()
        nets.append(net)
    multilabel = bool(meta.get("multilabel"))
    want = meta.get("fingerprint")
    if want and net_fingerprint(nets, classes, multilabel) != want:
        raise BadInputError(f"{p}: weights do not match the head's recorded fingerprint (file altered or corrupt)",
                            hint="retrain with `alq train`")
    head = Head(nets=nets, classes=classes, multilabel=multilabel, meta=meta)
    if device is not None:
        head.to(device)
    return head
