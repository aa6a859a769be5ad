"""A head: a linear or one-hidden-layer MLP classifier on pool embeddings.

The head file is a ``torch.save`` of plain tensors and a JSON string, so it
loads with ``torch.load(weights_only=True)``: no pickled code runs. It carries
the class names in alq's stable order, the input dimension, the input
normalisation (inside the network as buffers), the pool fingerprint it was
trained on, training metrics and the alq version.

An ensemble (``alq train --ensemble K``) stores K members; ``net`` (member 0)
is the head every strategy uses, ``nets`` (all K) feed BALD.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from alq import __version__
from alq.errors import BadInputError
from alq.io import atomic_path

FORMAT = "alq-head"
VERSION = 1
NORMALIZE = (None, "standardize", "l2")


class HeadNet(nn.Module):
    """normalise -> [Linear -> ReLU -> Dropout] -> Linear (``out``).

    ``features(x)`` is the input of the last linear layer: the space in which
    MASE/BASE distances and BADGE gradient embeddings are defined.
    """

    def __init__(self, dim: int, n_classes: int, *, hidden: int = 0, dropout: float = 0.0,
                 normalize: str | None = None):
        super().__init__()
        if normalize not in NORMALIZE:
            raise BadInputError(f"normalize={normalize!r} must be one of standardize, l2 or none")
        self.dim, self.n_classes, self.hidden, self.dropout_p, self.normalize = dim, n_classes, hidden, dropout, normalize
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("scale", torch.ones(dim))
        if hidden > 0:
            self.body = nn.Sequential(nn.Linear(dim, hidden), nn.ReLU(), nn.Dropout(dropout))
            self.out = nn.Linear(hidden, n_classes)
        else:
            self.body = nn.Identity()
            self.out = nn.Linear(dim, n_classes)

    def prepare(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(self.out.weight.dtype)
        if self.normalize == "l2":
            x = torch.nn.functional.normalize(x, dim=1)
        elif self.normalize == "standardize":
            x = (x - self.mean) / self.scale
        return x

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(self.prepare(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.features(x))


@dataclass
class Head:
    nets: list[HeadNet]
    classes: list
    multilabel: bool = False
    meta: dict = field(default_factory=dict)

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
        return self.meta.get("fingerprint", "")

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
        unknown = [c for c in classes if c not in set(self.classes)]
        if unknown:
            raise BadInputError(f"{path}: labels have classes the head was not trained on: {unknown[:5]}",
                                hint="retrain with `alq train`")

    def save(self, path: str | Path) -> None:
        meta = dict(self.meta)
        meta.update(classes=self.classes, multilabel=self.multilabel, dim=self.dim,
                    hidden=self.net.hidden, dropout=self.net.dropout_p, normalize=self.net.normalize,
                    ensemble=len(self.nets), alq_version=meta.get("alq_version", __version__))
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
        raise BadInputError(f"{p}: not a readable alq head file ({str(exc).splitlines()[0][:160]})") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise BadInputError(f"{p}: not an alq head file")
    if payload.get("version") != VERSION:
        raise BadInputError(f"{p}: head format version {payload.get('version')} not supported", hint="upgrade alq")
    meta = json.loads(payload["meta"])
    nets = []
    for sd in payload["state_dicts"]:
        net = HeadNet(int(meta["dim"]), len(meta["classes"]), hidden=int(meta.get("hidden", 0)),
                      dropout=float(meta.get("dropout", 0.0)), normalize=meta.get("normalize"))
        try:
            net.load_state_dict(sd)
        except RuntimeError as exc:
            raise BadInputError(f"{p}: weights do not match the head's metadata ({str(exc).splitlines()[0][:160]})") from None
        net.eval()
        nets.append(net)
    head = Head(nets=nets, classes=list(meta["classes"]), multilabel=bool(meta.get("multilabel")), meta=meta)
    if device is not None:
        head.to(device)
    return head
