"""The JSON API's request and response bodies (what ``/docs`` shows)."""

from __future__ import annotations

from typing import Any, Literal

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


class IntervenedHead(HeadEntry):
    """A head of an ablation's answer: its baseline pattern (``pattern_url``), the ablated
    run's (``ablated_pattern_url``) and their difference, and how far its attention moved."""

    ablated: bool = Field(description="this head was switched off")
    ablated_pattern_url: str
    ablated_thumb_url: str
    difference_pattern_url: str = Field(description="ablated − baseline attention weights")
    pattern_change: float = Field(description="mean over query rows of the total variation "
                                  "distance between the baseline and ablated rows (0: unchanged, "
                                  "1: disjoint); heads before the first ablated layer stay at 0")


class TokenProb(BaseModel):
    token: str
    token_id: int
    prob: float
    logprob: float


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
    target_first_logprob: float | None = Field(description="natural log of target_first_prob")
    top_k: list[TokenProb] = Field(description="the most probable next tokens at the predicting "
                                   "position, most probable first")
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
    target_logprob_change: float | None = Field(description="ablated − baseline log-probability "
                                                "of the target's first token; null without a target")
    heads: list[IntervenedHead]


class PatternOut(BaseModel):
    layer: int
    head: int
    tokens: list[str] = Field(description="the prompt's tokens; empty for a mean over prompts")
    z: list[list[float | None]] = Field(description="per (query, key): the log10 attention "
                                        "weight (scale log10) or a difference of weights (scale "
                                        "difference); null above the diagonal")
    floor: float = Field(description="lowest value shown: log10 weights are clipped there; -1 "
                         "for a difference")
    scale: Literal["log10", "difference"] = "log10"
    n: int | None = Field(None, description="patterns averaged (mean patterns only)")


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


# --- the atlas ----------------------------------------------------------------------------------


class RunOut(BaseModel):
    report: dict[str, Any] = Field(description="`apmae report --json` of the run")
    tasks: list[str]
    ready: bool
    problem: str | None
    missing: list[str]
    layers: int | None
    heads: int | None
    window: int | None
    model_card: str | None = Field(description="URL of the embedded model's card, if it is the model")


class HeadSummary(BaseModel):
    layer: int
    head: int
    n_clusters: int
    noise_share: float
    importance: float | None = Field(description="pooled SHAP over wrong completions")
    causal_accuracy: float | None = Field(description="first-token accuracy change when this "
                                          "head alone is switched off (train split)")
    causal_accuracy_ci: list[float] | None
    suggested_ablation: bool = Field(description="causal_accuracy's interval lies above zero")


class EffectOut(BaseModel):
    layer: int
    head: int
    value: float
    ci: list[float]
    n: int


class HeadEffectsOut(BaseModel):
    task: str
    tasks: list[str]
    measures: dict[str, list[EffectOut]] = Field(description="shap_abs, shap, causal_accuracy, "
                                                 "causal_logprob")


class InterventionsOut(BaseModel):
    settings: dict[str, Any] | None
    all: dict[str, dict[str, dict[str, Any]]] = Field(description="pooled: method -> size -> metrics")
    by_task: dict[str, dict[str, dict[str, dict[str, Any]]]] = Field(
        description="task -> method -> size -> heads and metrics")
    verdict: dict[str, Any]


class EnrichmentTest(BaseModel):
    """One category's share in a cluster against the head's base rate (hypergeometric,
    two-sided, Benjamini-Hochberg over the head's tests: apmae.atlas.describe)."""

    count: int
    share: float = Field(description="of the cluster")
    base: float = Field(description="share in the whole head")
    lift: float | None = Field(description="share / base")
    p: float
    q: float = Field(description="p corrected for every test of the head")
    mark: Literal["", "*", "**", "***"] = Field(description="q below 0.05, 0.01, 0.001")
    direction: Literal["over", "under", "even"]


class EnrichmentOut(BaseModel):
    tasks: dict[str, EnrichmentTest]
    correct: EnrichmentTest = Field(description="right first tokens")


class MetricsOut(BaseModel):
    """Means over the stored patterns (a sample: ``n`` says how many) of apmae.atlas.describe's
    metrics, each a mean over query rows 1..T-1."""

    n: int = Field(description="kept patterns the metrics rest on")
    sink: float | None = Field(description="weight on the first token")
    previous: float | None = Field(description="weight on the previous token")
    self: float | None = Field(description="weight on itself (the diagonal)")
    local: float | None = Field(description="weight on the 8 most recent keys, itself included")
    induction: float | None = Field(description="weight on keys whose preceding token is the "
                                    "query's token, over rows that have one")
    distance: float | None = Field(description="mean query − key distance, tokens")
    entropy: float | None = Field(description="row entropy, nats")


class ClusterOut(BaseModel):
    id: int
    label: int = Field(description="the cluster within its head; -1 is noise")
    size: int
    medoid: str | None = Field(description="scenario key of the medoid")
    exemplars: list[str]
    by_task: dict[str, int]
    by_correct: dict[str, int]
    enrichment: EnrichmentOut
    metrics: MetricsOut | None = Field(description="over the cluster's kept members; null "
                                       "with metrics=false")
    description: str | None = Field(description="one line made from the metrics, with what sets "
                                    "the cluster apart from its head")
    matching: int | None = Field(None, description="members that pass the task/correct filter "
                                 "(null without a filter)")


class HeadDetailOut(HeadSummary):
    metrics: MetricsOut | None = Field(description="over the head's kept patterns; null with "
                                       "metrics=false")
    description: str | None
    matching_total: int | None = Field(description="the head's scenarios that pass the filter")
    clusters: list[ClusterOut]


class MapPoint(BaseModel):
    x: float
    y: float
    cluster: int
    key: str
    task: str
    correct: bool
    target: str
    completion: str


class ClusterCount(BaseModel):
    label: int
    size: int
    matching: int


class MapOut(BaseModel):
    layer: int
    head: int
    points: list[MapPoint]
    counts: list[ClusterCount] = Field(description="per cluster, members passing the filter")


class ScenarioOut(BaseModel):
    key: str
    task: str
    path: str
    split: str | None
    start: int | None
    end: int | None
    target: str
    completion: str
    correct_exact: bool
    correct_first_token: bool
    logprob_target_first: float | None
    predicted_correct: float | None = Field(description="the held-out predictor's probability "
                                            "of a right first token; held-out scenarios only")


class ClusterDetailOut(ClusterOut):
    layer: int
    head: int
    members: list[ScenarioOut]
    offset: int
    limit: int


class ScenarioPage(BaseModel):
    total: int
    offset: int
    limit: int
    sort: str
    order: Literal["asc", "desc"]
    items: list[ScenarioOut]


class ExportRow(ScenarioOut):
    """A row of the scenario export; beside these, one column per head asked for (``L1H4``:
    the scenario's cluster label at that head, -1 noise)."""

    model_config = ConfigDict(extra="allow")


class HeadLabel(BaseModel):
    layer: int
    head: int
    cluster: int


class ScenarioDetailOut(ScenarioOut):
    prefix: str | None
    suffix: str | None
    heads: list[HeadLabel]


class SweepPointOut(BaseModel):
    strategy: str
    n_heads: int
    repeat: int
    accuracy: float
    incorrect_to_correct: int
    correct_to_incorrect: int
    loss_change: float | None
    heads: list[list[int]]


class SweepOut(BaseModel):
    points: list[SweepPointOut]
    collapse: dict[str, Any] = Field(description="per strategy, where accuracy halves")


class SimilarHead(BaseModel):
    layer: int
    head: int
    distance: float


class SimilarOut(BaseModel):
    layer: int
    head: int
    run: str = Field(description="the run of the head asked about")
    other_run: str = Field(description="the run searched")
    by: Literal["embedding", "profile"] = Field(description="embedding: 1 − cosine of mean "
                                                "AP-MAE embeddings; profile: distance between "
                                                "standardised pattern-statistics profiles")
    n: int = Field(description="scenarios behind the asked head's vector")
    other_n: int
    items: list[SimilarHead]
