"""Open-set matchers: one score per (probe, gallery *identity*), higher = more likely that identity.

A matcher is fitted on the gallery (embeddings + identity per image) and
scores probes against its identities (:attr:`Matcher.identities`, first-seen
order). The accept score of a probe is its best identity's score; open-set
figures (DIR@FAR, TPIR@FPIR) threshold that score. Built by name from
:data:`MATCHERS`:

* ``cosine`` — an identity scores its best gallery image (max cosine), the
  usual baseline.
* ``nac`` — Neighborhood Aware Cosine (Park, Park & Teoh, "Open-Set Face
  Identification on Few-Shot Gallery by Fine-Tuning", ICPR 2022): cosine to
  identity prototypes (normalised mean embedding), softmax with temperature
  ``T`` over the top-``k`` of them; the top-1 probability is the accept score.
  A probe close to one prototype *and* far from its neighbours gets a high
  score; one roughly equidistant from several (typical of an unknown person)
  gets a low one, even when its raw cosine is high.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Hashable, Sequence
from typing import ClassVar

import numpy as np

from ..errors import UserError
from ..registry import Registry

MATCHERS: Registry[Matcher] = Registry("matcher")


def _normalise(x: np.ndarray) -> np.ndarray:
    x = np.atleast_2d(np.asarray(x, np.float32))
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


class Matcher(ABC):
    """``fit(gallery_emb, gallery_ids)`` then ``scores(probe_emb) → [P, len(identities)]``."""

    name: ClassVar[str]
    identities: list[Hashable]

    def fit(self, gallery_emb: np.ndarray, gallery_ids: Sequence[Hashable]) -> Matcher:
        """Group the gallery images by identity; every identity keeps ≥ 1 image."""
        ids = list(gallery_ids)
        emb = _normalise(gallery_emb)
        if len(emb) != len(ids) or not ids:
            raise UserError(f"a matcher needs a non-empty gallery with one id per embedding ({len(emb)} vs {len(ids)})")
        self.identities = list(dict.fromkeys(ids))
        code = {who: i for i, who in enumerate(self.identities)}
        labels = np.array([code[who] for who in ids])
        order = np.argsort(labels, kind="stable")
        self._gallery = emb[order]  # images grouped by identity, identities in order
        self._starts = np.searchsorted(labels[order], np.arange(len(self.identities)))
        return self

    @abstractmethod
    def scores(self, probe_emb: np.ndarray) -> np.ndarray: ...


@MATCHERS.register("cosine")
class CosineMatcher(Matcher):
    """An identity's score is the cosine to its best gallery image."""

    name = "cosine"

    def scores(self, probe_emb: np.ndarray) -> np.ndarray:
        s = _normalise(probe_emb) @ self._gallery.T
        return np.maximum.reduceat(s, self._starts, axis=1)


@MATCHERS.register("nac")
class NACMatcher(Matcher):
    """Softmax (temperature ``T``) over the cosines to the ``k`` nearest identity prototypes.

    Scores of all identities are ``exp(c_j / T) / Σ_{i ∈ top-k} exp(c_i / T)``:
    inside the top-k that is the softmax probability, outside it a value
    below every top-k one, so the ranking of identities is the prototype
    cosine's and closed-set figures at any rank stay defined. ``T = 1`` is
    the paper's setting (its code applies no scale).
    """

    name = "nac"

    def __init__(self, k: int = 16, temperature: float = 1.0) -> None:
        if k < 1:
            raise UserError(f"NAC needs k ≥ 1 (got {k})")
        if not temperature > 0:
            raise UserError(f"NAC needs a temperature > 0 (got {temperature})")
        self.k, self.temperature = int(k), float(temperature)

    def fit(self, gallery_emb: np.ndarray, gallery_ids: Sequence[Hashable]) -> NACMatcher:
        super().fit(gallery_emb, gallery_ids)
        sums = np.add.reduceat(self._gallery, self._starts, axis=0)
        self.prototypes = _normalise(sums)
        return self

    def scores(self, probe_emb: np.ndarray) -> np.ndarray:
        c = _normalise(probe_emb).astype(np.float64) @ self.prototypes.T.astype(np.float64)
        n = c.shape[1]
        top = np.partition(c, n - min(self.k, n), axis=1)[:, n - min(self.k, n) :]
        best = top.max(1, keepdims=True)  # subtracted for numerical safety; cancels in the ratio
        z = np.exp((top - best) / self.temperature).sum(1, keepdims=True)
        return np.exp((c - best) / self.temperature) / z
