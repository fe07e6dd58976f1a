"""The pCSAT model: fitted coefficients as versioned data, applied to a conversation's signals.

`model.json` holds everything a prediction needs, written by `uv run python -m bench.pcsat_fit` and never
trained at request time: the signals' centre and scale on the fitting half, one coefficient per signal, the
isotonic calibration, the scorer versions the signals were computed with, and the model's measured validity.
The risk score s = intercept + Σ coefficient·(value − centre)/scale (a signal that cannot be taken, like
timing without timestamps, sits at its centre); p_dissatisfied is s mapped through the calibration's
points (a non-decreasing step curve, linear between its points, flat beyond its ends); the predicted
satisfaction is 1 + 4·(1 − p_dissatisfied) on the 1–5 survey scale (STAR has yes/no answers, not 1–5
ratings, so the scale is the calibrated probability restated, not a fitted rating).
"""

from __future__ import annotations

from bisect import bisect_right
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import orjson

from qastream_scoring.autoqa.base import ConversationView
from qastream_scoring.pcsat.signals import signals
from qastream_shared.conversation import Conversation
from qastream_shared.events import PredictedCsat

MODEL_PATH = Path(__file__).with_name("model.json")
EVIDENCE_CUES = 3  # the turns of this many strongest cues are quoted as evidence
EVIDENCE_TURNS = 6
NO_CUSTOMER = "no customer turn: nothing shows how the customer felt"
NO_AGENT = "no agent turn: the customer was never answered, so there is no service to judge"


@dataclass(frozen=True, slots=True)
class PcsatModel:
    version: str
    center: dict[str, float]
    scale: dict[str, float]
    coefficients: dict[str, float]
    intercept: float
    calibration_risk: tuple[float, ...]  # increasing
    calibration_p: tuple[float, ...]  # non-decreasing, one per risk point
    scorer_versions: dict[str, str]
    document: dict[str, Any]  # the whole file, validity figures included, as the API serves it

    @classmethod
    def from_document(cls, doc: dict[str, Any]) -> PcsatModel:
        return cls(
            version=doc["version"],
            center=doc["center"],
            scale=doc["scale"],
            coefficients=doc["coefficients"],
            intercept=doc["intercept"],
            calibration_risk=tuple(doc["calibration"]["risk"]),
            calibration_p=tuple(doc["calibration"]["p"]),
            scorer_versions=doc["scorer_versions"],
            document=doc,
        )

    def predict(self, conversation: Conversation | ConversationView) -> PredictedCsat:
        return PredictedCsat.model_validate(self._document(conversation))

    def predict_json(self, conversation: Conversation | ConversationView) -> bytes:
        """The prediction as JSON, byte for byte PredictedCsat's model_dump_json, without building the model:
        the service stores it and splices it into the event as it is (orjson writes it several times faster
        than pydantic, and the model's 16 objects cost as much again to validate)."""
        return orjson.dumps(self._document(conversation))

    def _document(self, conversation: Conversation | ConversationView) -> dict[str, Any]:
        """The prediction as plain JSON values, every field of PredictedCsat in its order."""
        view = conversation if isinstance(conversation, ConversationView) else ConversationView(conversation)
        if not view.customer:
            return self._none(NO_CUSTOMER)
        if not view.agent:
            return self._none(NO_AGENT)
        try:
            found = signals(view)
        except Exception as exc:  # a scorer bug leaves this review without pCSAT, as it leaves a category N/A
            return self._none(f"no signals: {type(exc).__name__}: {exc}"[:500])
        cues: list[dict[str, Any]] = []
        effects: list[float] = []
        center, scale = self.center, self.scale
        for name, coefficient in self.coefficients.items():
            value, turns, note = found[name]
            if value is None:  # an absent signal sits at the mean: no effect, signed as the coefficient is
                effect = round(coefficient * 0.0, 4)
            else:
                effect = round(coefficient * ((value - center[name]) / scale[name]), 4)
                value = round(value, 4)
            effects.append(effect)
            cues.append({"name": name, "value": value, "effect": effect, "turns": turns, "note": note})
        p = round(self.calibrated(self.intercept + sum(effects)), 4)
        cues.sort(key=_strongest)
        quoted = dict.fromkeys(t for c in cues[:EVIDENCE_CUES] if c["effect"] for t in c["turns"])
        evidence = [view.evidence(t) for t in list(quoted)[:EVIDENCE_TURNS]]
        return {
            "model_version": self.version,
            "predicted": round(1 + 4 * (1 - p), 2),
            "p_dissatisfied": p,
            "evidence": [{"turn": e.turn, "quote": e.quote} for e in evidence],
            "reason": None,
            "cues": cues,
        }

    def _none(self, reason: str) -> dict[str, Any]:
        return {
            "model_version": self.version,
            "predicted": None,
            "p_dissatisfied": None,
            "evidence": [],
            "reason": reason,
            "cues": [],
        }

    def calibrated(self, risk: float) -> float:
        """The calibration curve at `risk`: what sklearn's IsotonicRegression(out_of_bounds="clip") predicts."""
        xs, ps = self.calibration_risk, self.calibration_p
        k = bisect_right(xs, risk)
        if k == 0:
            return ps[0]
        if k == len(xs):
            return ps[-1]
        x0, x1 = xs[k - 1], xs[k]
        return ps[k - 1] + (ps[k] - ps[k - 1]) * (risk - x0) / (x1 - x0)


def _strongest(cue: dict[str, Any]) -> tuple[float, str]:
    return -abs(cue["effect"]), cue["name"]


@cache
def current() -> PcsatModel:
    """The model shipped with this release."""
    return PcsatModel.from_document(orjson.loads(MODEL_PATH.read_bytes()))
