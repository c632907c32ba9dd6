"""Every stage's settings: one dataclass per stage, the comment on each field its explanation.

``apmae`` turns these fields into flags whose help is that comment
(:func:`apmae.cli.common.field_comments`); the pipeline fills them in and the model cards record
them. The module imports nothing heavy, so ``apmae --help`` loads neither torch nor
transformers; each stage module imports its own settings from here, and what acts on them (a
device, a store's format) stays in the stage.
"""

from __future__ import annotations

from dataclasses import dataclass

#: ``--dtype`` names: the dtypes a model's weights load in (:func:`apmae.lm.load.choose_dtype`).
DTYPES = ("bfloat16", "float16", "float32")


@dataclass
class LMTrainConfig:
    """Everything that decides the trained model; the model card records it."""

    source: str  # corpus (see apmae.corpus.Corpus); only its train split is used
    seed: int = 0  # tokenizer sample, initial weights and data order
    # tokenizer
    vocab_size: int = 8192  # the BPE tokenizer's vocabulary
    tokenizer_files: int = 2500  # files sampled to train the tokenizer
    # model (Starcoder2 architecture)
    hidden_size: int = 256  # model width
    layers: int = 4  # transformer layers
    heads: int = 8  # attention heads per layer
    kv_heads: int = 4  # key-value heads (grouped-query attention)
    mlp: int = 1024  # MLP width
    # data
    window: int = 256  # prompt tokens, as in the scenarios
    short_windows: str = ""  # e.g. "64,128": some batches use these shorter prompts (see apmae.lm.train)
    max_middle: int = 24  # middle tokens at most (longer spans are resampled)
    plain_share: float = 0.1  # share of plain left-to-right windows
    middle_share: float = 0.5  # share of the loss on middle + end-of-text tokens (see apmae.lm.train.fim_loss)
    task_share: float = 0.0  # share of FIM middles drawn as a scenario task's span (see apmae.lm.train)
    # optimisation
    batch_size: int = 16  # windows per step
    steps: int = 3600  # optimizer steps
    lr: float = 1.5e-3  # peak learning rate (cosine decay after warmup)
    min_lr: float = 1e-4  # learning rate at the last step
    warmup: int = 300  # steps of linear warmup
    weight_decay: float = 0.1  # AdamW weight decay on matrices
    bf16: bool = True  # bf16 autocast: faster on CPUs with bf16 instructions, at the same loss
    # bookkeeping
    checkpoint_every: int = 200  # steps between resumable checkpoints
    snapshot_every: int = 1000  # keep fp16 weights for the learning curve
    threads: int = 0  # torch threads; 0 = all cores
    # warm start: a finished run's folder whose fp32 weights and tokenizer this run continues
    # with a fresh optimizer and schedule (a second stage with another data mix)
    init_from: str = ""


KEEP_HELP = "which patterns to store: all | sample:N (a bounded sample) | none"
#: Store dtype and log range per ``--precision``: 8 bits over log p in [-20, 0] (the default
#: AP-MAE scaling's floor), or float16 log-probabilities floored at LOG_FLOOR.
PRECISIONS = {"uint8": ("uint8", 20.0), "float16": ("float16", 0.0)}


@dataclass
class ExtractConfig:
    batch_size: int = 8
    keep: str = "all"  # all | sample:N | none (patterns can be recomputed by one forward pass)
    extra_tokens: int = 2  # decoding budget beyond the target's length (+ end-of-text)
    # kept patterns on disk: uint8 (log p in [-20, 0], 255 steps; see apmae.store.arrays) or
    # float16; a run's store keeps the precision it was created with
    precision: str = "uint8"

    def keep_limit(self) -> int | None:
        """How many scenarios' patterns to keep; None for all."""
        if self.keep == "all":
            return None
        if self.keep == "none":
            return 0
        if self.keep.startswith("sample:") and self.keep[7:].isdigit():
            return int(self.keep[7:])
        raise ValueError(f"--keep {self.keep!r}: expected all, none or sample:N")


@dataclass
class MAETrainConfig:
    """Everything that decides the trained AP-MAE; saved beside it."""

    preset: str = "cpu"  # cpu | paper (see apmae.mae.config.PRESETS)
    scaling: str = "log_affine"  # see apmae.mae.scaling
    log_floor: float = -20.0  # log_affine: weights below e^floor count as not attended
    image_size: int = 0  # 0: image_size_for(preset, window); a divisor of the window average-pools
    mask_ratio: float = 0.5  # share of the lower-triangular patches masked per image
    decoder_profiles: bool | None = None  # the decoder gets the visible row/column profiles (model.py); unset: the preset's
    # each attention head adds a learned bias per relative patch offset; unset: the preset's
    relative_position_bias: bool | None = None
    patch_size: int = 0  # 0: image / 8, the paper's 8 x 8 grid (36 lower-triangular patches)
    tasks: str = "all"  # training patterns: tasks, or all but noise
    completions: str = "any"  # any | correct | incorrect (the paper: correct random-task ones)
    head_fraction: float = 0.25  # heads per layer drawn per inference and epoch (the paper's)
    batch_size: int = 64  # patterns per step, over all ranks
    steps: int = 1500  # optimizer steps
    lr: float = 2e-3  # beat 1e-3 on the default run's patterns (RESULTS.md, steps and learning rate)
    min_lr: float = 1e-5  # learning rate at the last step
    warmup: int = 100  # steps of linear warmup
    weight_decay: float = 0.05  # AdamW weight decay on matrices
    seed: int = 0  # initial weights, masks and pattern sampling
    checkpoint_every: int = 250  # steps between resumable checkpoints
    threads: int = 0  # torch threads per rank; 0 = the cores shared among ranks
    device: str = "cpu"  # cpu | cuda (under torchrun: the rank's own GPU) | auto (cuda if there is one)
    # bf16 autocast for forward and backward (weights, optimizer and loss stay fp32): faster
    # than fp32 on CPUs with bf16 instructions, as the LM trains and encode runs
    bf16: bool = True

    def check(self) -> None:
        """Refuse values no training can run with (the tasks and completions are checked by
        :class:`apmae.mae.data.PatternFilter`, a GPU's presence where training starts)."""
        if not 0 < self.head_fraction <= 1:
            raise ValueError("head_fraction must be in (0, 1]")
        if self.batch_size < 1 or self.steps < 1:
            raise ValueError("batch_size and steps must be >= 1")
        if self.device not in ("cpu", "cuda", "auto"):
            raise ValueError(f"device {self.device!r}: expected cpu, cuda or auto")


@dataclass
class MAEEvalConfig:
    max_patterns: int = 4096  # held-out (scenario, layer, head) patterns, sampled
    batch_size: int = 128  # patterns per forward pass
    seed: int = 0  # which patterns are sampled and masked
    triptychs: int = 8  # PNGs written
    mean_scenarios: int = 400  # train-split scenarios averaged for head_mean


@dataclass
class EncodeConfig:
    batch_size: int = 8  # scenarios per batch (each is layers x heads patterns)
    pooling: str = "cls"  # cls (the paper's) | mean
    bf16: bool = True  # bf16 autocast for the encoder (much faster on CPUs with bf16); stored in fp16


@dataclass
class ClusterConfig:
    n_components: int = 8  # UMAP dimensions HDBSCAN clusters in (the paper's 8)
    n_neighbors: int = 20  # UMAP neighbours (the paper's 20; fewer for small heads)
    min_dist: float = 0.05  # UMAP min_dist (the paper's)
    metric: str = "cosine"  # distance between embeddings (the paper's cosine)
    min_samples: int = 20  # HDBSCAN min_samples (the paper's 20; fewer for small heads)
    min_cluster_size: int = 25  # HDBSCAN min_cluster_size (the paper's 25; smaller for small heads)
    cluster_selection: str = "eom"  # HDBSCAN's cluster_selection_method: eom (the paper's) | leaf (finer)
    exemplars: int = 5  # per cluster, nearest to the medoid first
    radius_quantile: float = 0.95  # a new point within this quantile of members' distances joins
    n_epochs: int = 200  # UMAP's layout optimisation (its own default: 500 below 10k points)
    map_epochs: int = 100  # the 2-D map's, which starts from the 8-D map's principal axes
    exact_knn_below: int = 20000  # exact cosine neighbours (shared by both maps) below this size
    workers: int = 0  # heads clustered in parallel processes; 0 = one per core
    seed: int = 0  # UMAP's random state

    def scaled(self, n: int) -> tuple[int, int, int]:
        """``(n_neighbors, min_samples, min_cluster_size)`` for a head with ``n`` points."""
        size = max(2, min(self.min_cluster_size, n // 10))
        return max(2, min(self.n_neighbors, n - 1)), max(1, min(self.min_samples, size)), size


@dataclass
class PredictorConfig:
    folds: int = 5  # k of the per-task k-fold (the paper's balanced design)
    seed: int = 0  # folds, class balancing and boosting
    max_iter: int = 200  # boosting rounds
    learning_rate: float = 0.1  # boosting step size
    max_depth: int = 6  # depth of each boosted tree
    min_per_class: int = 10  # a task needs this many correct and incorrect completions
    pca_components: int = 32  # embeddings variant


#: The orders ``apmae sweep`` ablates heads in (:mod:`apmae.atlas.sweep`), as the report and
#: the API name them.
STRATEGIES = ("positive", "negative", "neutral", "causal", "random")


@dataclass
class SweepConfig:
    scenarios: int = 300  # held-out scenarios scored at every point
    repeats: int = 3  # random orders averaged
    batch_size: int = 32  # scenarios per ablated forward pass
    seed: int = 0  # random orders and the scenarios drawn


@dataclass
class InterventionConfig:
    """The defaults fit the default build's time budget (a few minutes on 2 cores); larger
    samples narrow the intervals (``apmae sweep --train-per-task 40 --heldout-per-task 60``)."""

    train_per_task: int = 12  # train-split scenarios per task: single-head effects and greedy search
    heldout_per_task: int = 12  # held-out scenarios per task that every chosen set is tested on
    sizes: tuple[int, ...] = (1, 3)  # heads switched off per set
    random_sets: int = 20  # random head sets per size, each tested like a chosen one
    greedy_candidates: int = 4  # the best single-ablation heads the greedy search picks among
    # heads ablated one at a time for their causal effect: every head of a model with no more,
    # else the ones the correctness predictor reads most (each costs a forward pass per scenario)
    candidates: int = 64
    min_cluster: int = 4  # train members a cluster needs to count as failure-enriched
    bootstrap: int = 1000  # resamples for every interval
    seed: int = 0


@dataclass
class DemoConfig:
    # scenarios per task (14 tasks) from the train split's files: the attention-only predictor
    # gains with every doubling of them (RESULTS.md `heldout-attention-300`); this many fit
    # the 12-minute build on 2 cores (`build-time`)
    per_task: int = 250
    # and per task (noise aside) from the held-out files, so that the held-out AUC's interval
    # is narrow enough to compare predictors (RESULTS.md `heldout-attention`); a task with fewer
    # held-out files gets fewer
    heldout_per_task: int = 200
    seed: int = 0  # mining, AP-MAE, clustering, predictor and sweep
    window: int = 256  # prompt tokens per scenario (the embedded model's context)
    # patterns kept for AP-MAE training and the explorer (the others are recomputed when
    # needed): a bounded sample keeps the storage per pattern within the goal as runs grow
    # (bench/storage.py, RESULTS.md `bytes-per-pattern`)
    keep: str = "sample:600"
    batch_size: int = 8  # scenarios per extraction forward pass
    # AP-MAE: the shipped one (apmae.ship) where it fits the run's patterns, unless
    # train_mae; else trained here for mae_steps, a short training that reconstructs worse
    # than the shipped one's long one (RESULTS.md `mae-cpu-preset`, `mae-shipped`)
    train_mae: bool = False
    mae_steps: int = 1800  # steps when the AP-MAE is trained here (see train_mae)
    # HDBSCAN's leaf clusters: at this run's size the paper's eom splits little more than code
    # from the noise control, which leaves the cluster-label predictor at chance; leaf splits
    # each head into many more clusters
    cluster_selection: str = "leaf"
    # held-out scenarios scored at each point of the collapse curve: a point's accuracy is good
    # to about ±0.12 (95%), enough to place the collapse; fewer than 100 keeps the build in
    # 12 minutes beside the predictor's capacity search (`apmae sweep --scenarios` for more)
    sweep_scenarios: int = 60
    atlas: bool = True  # also build the atlas (AP-MAE, encode, cluster, predictor, sweep)
    accept_corpus: bool = False  # mine a corpus other than the one the embedded model trained on
