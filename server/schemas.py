"""The JSON API's request and response bodies (what ``/docs`` shows)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class PredictRequest(BaseModel):
    """Java code and the span to complete: ``start`` + ``end`` (character offsets of the span
    to mask), or ``task`` (the server picks a span of that task and says which), or ``cursor``
    (an open completion at that offset, without ground truth)."""

    model_config = ConfigDict(extra="forbid")
    code: str = Field(description="Java source; at most APMAE_MAX_CODE_BYTES bytes (UTF-8)")
    start: int | None = Field(None, description="first character of the span to mask")
    end: int | None = Field(None, description="one past the last character of the span")
    task: str | None = Field(None, description="a completion task, e.g. identifiers")
    cursor: int | None = Field(None, description="offset of an open completion")


class InterveneRequest(PredictRequest):
    ablate: list[list[int]] = Field(description="[[layer, head], ...] to switch off", max_length=4096)


class HeadEntry(BaseModel):
    layer: int
    head: int
    cluster: int | None = Field(description="assigned cluster; -1 noise; null without an atlas")
    pattern_url: str
    thumb_url: str


class ConfidenceOut(BaseModel):
    """The model's own confidence in its next token: read from its output, not its attention
    (the reference an attention-only predictor is measured against)."""

    top1_prob: float
    entropy: float = Field(description="of the next-token distribution, in nats")
    predicted_correct: float | None = Field(description="probability of a right completion "
                                            "from top1_prob, entropy and the task alone")


class PredictorOut(BaseModel):
    """The attention-only predictor that answered, with its figures on held-out scenarios."""

    name: str = Field(description="its feature kind, e.g. row_stats (apmae.atlas.heldout)")
    task: str = Field(description="the task it read this completion as")
    heldout_auc: float | None
    heldout_auc_ci: list[float] | None = Field(description="95% bootstrap interval")
    within_task_auc: float | None = Field(description="mean of per-task held-out AUCs")
    within_task_auc_ci: list[float] | None
    brier: float | None
    lm_confidence_heldout_auc: float | None = Field(description="the confidence baseline's "
                                                    "held-out AUC, on the same scenarios")
    lm_confidence_heldout_auc_ci: list[float] | None


class OutcomeOut(BaseModel):
    completion: str
    finished: bool
    first_token: str
    correct_exact: bool | None
    correct_first_token: bool | None
    target_first_prob: float | None
    predicted_correct: float | None = Field(description="the predictor's probability that the "
                                            "completion is right, from the attention alone; null "
                                            "without a predictor or when out_of_distribution")
    out_of_distribution: list[str] = Field(description="why the input is unlike the prompts the "
                                           "predictor was fitted on (then no probability is given)")
    lm_confidence: ConfidenceOut


class PredictResponse(OutcomeOut):
    id: str = Field(description="handle of this result's patterns")
    task: str | None
    target: str | None
    start: int
    end: int
    tokens: list[str]
    predictor: PredictorOut | None
    window: int
    approximate: bool = Field(description="prompt shorter than the run's window: clusters are "
                              "assigned from resized patterns")
    missing: list[str] = Field(description="parts of the atlas the run lacks")
    heads: list[HeadEntry]


class ChangedHead(BaseModel):
    layer: int
    head: int
    before: int
    after: int


class InterveneOutcome(OutcomeOut):
    changed_heads: list[ChangedHead] = Field(default_factory=list)


class InterveneResponse(BaseModel):
    id: str
    task: str | None
    target: str | None
    start: int
    end: int
    tokens: list[str]
    predictor: PredictorOut | None
    ablate: list[list[int]]
    baseline: InterveneOutcome
    ablated: InterveneOutcome
    heads: list[HeadEntry]


class PatternOut(BaseModel):
    layer: int
    head: int
    tokens: list[str]
    z: list[list[float | None]] = Field(description="log10 attention weight per (query, key); "
                                        "null above the diagonal")
    floor: float


class ErrorOut(BaseModel):
    """The body of every error the API answers: what is wrong and what to change."""

    detail: str


_ERRORS = {
    400: "the body cannot be read (e.g. not UTF-8)",
    404: "no such resource in this run (or the run has no atlas in the database)",
    413: "request body or code over the configured limit",
    422: "invalid request: bad parameter, span, task or body",
    503: "the model is busy (retry after Retry-After seconds) or the run is not built",
    504: "no answer within the configured timeout",
}


def errors(*codes: int) -> dict[int | str, dict]:
    """OpenAPI ``responses`` for these error status codes, each with an :class:`ErrorOut` body."""
    return {code: {"model": ErrorOut, "description": _ERRORS[code]} for code in codes}


class HealthOut(BaseModel):
    status: str
    run: str
    ready: bool
    problem: str | None
    queue: int
