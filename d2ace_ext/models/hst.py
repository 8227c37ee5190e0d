"""HST (Chen, Pu, Liu, Shi, Yang & Lin, IJCV 2024): heterogeneous semantic transfer,
with the D2ACE paper's Appendix D.2 settings (θ_intra = θ_cross = 1.0, intra
co-occurrence weight 1.0, inter distance weight 1.0, 50 prototypes), read against the
released code (HCP-MLR-PL: ``model/HST.py``, ``loss/HST.py``, ``HST.py``,
``model/backbone/resnet.py``, ``utils/dataloader.py``, ``config.py``).

Network: ResNet map, averaged over 2 × 2 windows after layer4 as the release's ResNet
does (7 × 7 at 448 px; ``map_pool``) -> 1×1 conv + BN to ``image_dim`` (1024) -> semantic
decoupling (label-embedding-guided attention over positions, one C-vector per label) ->
gated GNN (3 steps) over the label graph -> tanh(fc([gnn, semantic])) -> one classifier
per label. An intra-image head scores every label pair's co-occurrence from the
semantic vectors.

Objective on complete labels (the D2ACE setting), as the release's ``HST.py`` with
w_intra = ``intra_weight``, w_inter = ``inter_weight``, G = ``generate_label_epoch`` (5):

* before epoch G: BCE + w_intra · pair asymmetric loss + w_inter · instance contrastive
  loss (epoch 0 ramps the last two linearly over its steps);
* from epoch G: 3 · BCE (the release's BCEs against the labels and against the intra- and
  cross-complemented labels coincide when no label is unknown, and it sums them; so
  ``bce_weight`` is 3 from then on) + 0.1 · BCE(intra pseudo labels, y) + 0.1 · BCE(cross
  pseudo labels, y) + w_intra · pair loss + w_inter · instance loss + w_inter · prototype
  loss. Pseudo labels are clamp(score − θ, 0, 1), fed to the BCE as logits.

Choices, one line each:
* word embeddings: a user file (GloVe in HST) matched to the labels by name
  (``label_files``), or one-hot (q, q) inputs;
* label graph: P(L_j | L_i) = n_ij / n_i from the training labels (or a ``graph=`` counts
  file), diagonal 1, as the release's ``get_graph_file`` divides each row by its
  diagonal; a label without positives gets a zero row (the release's would be NaN);
  in = A, out = Aᵀ;
* margins θ: learnable parameters (the release's default ``isIntra/InterMarginLearnable``
  True), starting at ``theta_intra`` / ``theta_cross``, under the optimiser's weight decay;
  ``learn_margins=False`` fixes them. They do get gradient at θ = 1: an image with one
  positive label scores that label exactly 1, and the release's torch (1.7.1) passes
  clamp's gradient at its bounds (subgradient 1, torch from 0.4.1 on). Recent torch
  returns 0 there (pytorch#184574), which would freeze θ = 1 for good, so the pseudo
  labels use :func:`clamp_keeping_bounds`, the release's clamp written out;
* instance contrastive loss: cosine over batch pairs per label, pos-pos 1 − cos, pos-neg and
  neg-neg 1 + cos, the latter two cut to 2P random + P hardest when P pos-pos pairs exist;
* prototype loss (``prototype_loss``): "paper" y(1 − s̄) + (1 − y)(1 + s̄), s̄ the mean cosine
  to the label's prototypes, pulling positives towards their label's prototypes and
  pushing negatives away; the release computes s̄ · t + 1 with t = ±1, the opposite on
  both sides (positives pushed away, negatives pulled in), read as a slip;
  "release" reproduces it;
* prototypes: k-means (scikit-learn, ``kmeans_init`` = 10 restarts, the default of the
  scikit-learn the release ran on; k = min(50, positives)) of the semantic vectors of
  *every* positive training image of each label (``prototype_sample`` caps it), taken in
  eval mode over the training images under the *training* transform (random crops and
  flips, as the release iterates its training loader; ``prototype_augment``), at epochs
  5, 10, 15, ... (the release's script recomputes every 5 epochs; its config default
  computes once); ``start_epoch`` gets the pass from the protocol; k-means is seeded;
* backbone: with a checkpoint only layer4 trained, earlier BatchNorm frozen (released code);
  from random weights every layer trains (frozen random layers would be fixed noise);
* the final classifier runs in float32 with autocast off, so bf16 autocast never rounds
  the logits that mAP ranks.

Parts: ``hst_layers`` (the label graph, semantic decoupling, the gated GNN),
``hst_losses`` (pair, instance and the margins' clamp), ``hst_prototypes`` (k-means);
this module holds the model and its objective.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .backbone import Backbone
from .base import LabelwiseLinear, MultiLabelModel
from .hst_layers import GatedGNN, SemanticDecoupling, conditional_cooccurrence, hst_graph  # noqa: F401
from .hst_losses import clamp_keeping_bounds, instance_contrastive_loss, pair_asymmetric_loss
from .hst_prototypes import kmeans_prototypes
from .label_files import label_count_file, label_embeddings
from .label_graph import cooccurrence_counts

PROTOTYPE_LOSSES = ("paper", "release")


class HST(MultiLabelModel):
    """images (b, 3, H, W) (or feature maps with backbone="none") -> logits (b, q).

    in_features: 3 for images, the channel count for backbone="none" (feature maps are
    then taken as given: ``map_pool`` pools only a ResNet's map). train_labels build the
    label graph (or ``graph=`` a counts file). ``trainable``: default "layer4" with a
    checkpoint, else "all". Weights ``intra_weight`` / ``inter_weight`` (1.0, paper),
    margins ``theta_intra`` / ``theta_cross`` (1.0, learnable unless ``learn_margins=False``),
    ``prototypes`` (50); ``label_names`` / ``label_order``: how files are matched to the
    labels (``label_files``); the rest as the module notes say.
    """

    def __init__(
        self,
        in_features: int,
        num_labels: int,
        train_labels: torch.Tensor | None = None,
        *,
        backbone: str = "resnet101",
        checkpoint: str | None = None,
        trainable: str | None = None,
        embeddings: str | None = None,
        graph: str | None = None,
        label_order: str | None = None,
        label_names: list[str] | None = None,
        map_pool: int = 2,
        image_dim: int = 1024,
        hidden: int = 512,
        output_dim: int = 1024,
        steps: int = 3,
        theta_intra: float = 1.0,
        theta_cross: float = 1.0,
        learn_margins: bool = True,
        intra_weight: float = 1.0,
        inter_weight: float = 1.0,
        pseudo_bce_weight: float = 0.1,
        prototypes: int = 50,
        generate_label_epoch: int = 5,
        prototype_every: int = 5,
        prototype_loss: str = "paper",
        prototype_augment: bool = True,
        kmeans_init: int = 10,
        prototype_sample: int | None = None,
    ) -> None:
        super().__init__()
        if train_labels is None and graph is None:
            raise ValueError("HST builds its label graph from train_labels (n, q) or a graph= counts file; pass one")
        if prototype_loss not in PROTOTYPE_LOSSES:
            raise ValueError(f"prototype_loss must be one of {PROTOTYPE_LOSSES}, got {prototype_loss!r}")
        if not (isinstance(kmeans_init, int) and kmeans_init >= 1):
            raise ValueError(f"kmeans_init must be an integer >= 1 (k-means restarts), got {kmeans_init!r}")
        q = num_labels
        if trainable is None:  # freezing layers only keeps something when they hold pretrained weights
            trainable = "layer4" if checkpoint else "all"
        self.backbone = Backbone(backbone, in_features, checkpoint=checkpoint, trainable=trainable, pool=map_pool)
        c = self.backbone.out_channels
        self.project = (
            nn.Sequential(nn.Conv2d(c, image_dim, 1, bias=False), nn.BatchNorm2d(image_dim))
            if c != image_dim
            else nn.Identity()
        )
        self.register_buffer("words", label_embeddings(embeddings, q, label_names, label_order))
        self.decouple = SemanticDecoupling(image_dim, self.words.shape[1], hidden)
        counts = (
            label_count_file(graph, q, label_names, label_order)
            if graph is not None
            else cooccurrence_counts(train_labels)
        )
        self.gnn = GatedGNN(image_dim, hst_graph(*counts), steps)
        self.fc = nn.Linear(2 * image_dim, output_dim)
        self.classifier = LabelwiseLinear(q, output_dim)
        self.register_buffer("pairs", torch.triu_indices(q, q, 1))
        self.intra = nn.Sequential(nn.Linear(image_dim, hidden))
        self.intra_head = nn.Sequential(nn.Linear(2 * hidden, output_dim), nn.ReLU(), nn.Linear(output_dim, output_dim))
        self.intra_classifier = LabelwiseLinear(self.pairs.shape[1], output_dim)
        self.intra_margin = nn.Parameter(torch.tensor(float(theta_intra)), requires_grad=learn_margins)
        self.inter_margin = nn.Parameter(torch.tensor(float(theta_cross)), requires_grad=learn_margins)
        self.intra_weight, self.inter_weight, self.pseudo_bce_weight = intra_weight, inter_weight, pseudo_bce_weight
        self.num_prototypes, self.generate_label_epoch, self.prototype_every = (
            prototypes,
            generate_label_epoch,
            prototype_every,
        )
        self.prototype_loss, self.prototype_augment = prototype_loss, prototype_augment
        self.kmeans_init, self.prototype_sample = kmeans_init, prototype_sample
        # Fixed shapes so a checkpoint loads into a fresh model; ``has_prototypes`` says when they are set.
        self.register_buffer("prototype_bank", torch.zeros(q, prototypes, image_dim))
        self.register_buffer("has_prototypes", torch.zeros((), dtype=torch.bool))
        self.num_labels = q
        self.epoch, self._step, self._steps = 0, 0, 1

    def semantic(self, x: torch.Tensor) -> torch.Tensor:
        """(b, q, image_dim) per-label vectors."""
        return self.decouple(self.project(self.backbone(x)), self.words.to(x.dtype))

    @property
    def bce_weight(self) -> float:
        """The BCE's weight in the loss: 3 from epoch G on (module notes), else 1."""
        return 3.0 if self.epoch >= self.generate_label_epoch else 1.0

    def _heads(self, x: torch.Tensor):
        sem = self.semantic(x)
        out = torch.tanh(self.fc(torch.cat((self.gnn(sem), sem), dim=-1)))
        with torch.autocast(x.device.type, enabled=False):  # float32 logits (module notes)
            logits = self.classifier(out.float())
        pair = self.intra(sem)
        pair = torch.cat((pair[:, self.pairs[0]], pair[:, self.pairs[1]]), dim=-1)
        return logits, self.intra_classifier(self.intra_head(pair)), sem

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._heads(x)[0]

    def start_epoch(self, epoch: int, steps: int, feature_pass) -> None:
        """Called by the image protocol before each epoch; ``feature_pass()`` yields the
        training set's (x, y) batches for the prototype k-means."""
        self.epoch, self._step, self._steps = epoch, 0, max(1, steps)
        due = epoch >= self.generate_label_epoch and (epoch - self.generate_label_epoch) % self.prototype_every == 0
        if due and self.inter_weight > 0:
            self.compute_prototypes(feature_pass())

    @torch.no_grad()
    def compute_prototypes(self, batches, seed: int = 0) -> None:
        """k-means prototypes (q, prototypes, image_dim) of each label's positive semantic
        vectors over ``batches`` of (x, y) (module notes)."""
        was_training = self.training
        self.eval()
        q = self.num_labels
        found: list[list[torch.Tensor]] = [[] for _ in range(q)]
        for x, y in batches:
            with torch.autocast("cuda", dtype=torch.bfloat16, enabled=x.is_cuda):  # as the training steps
                sem = self.semantic(x).float().cpu()
            y = y.cpu()
            for c in range(q):
                found[c].append(sem[y[:, c] > 0, c])
        bank = kmeans_prototypes(
            found, self.prototype_bank, kmeans_init=self.kmeans_init, sample=self.prototype_sample, seed=seed
        )
        self.prototype_bank.copy_(bank)
        self.has_prototypes.fill_(True)
        self.train(was_training)

    def _pseudo_terms(self, co: torch.Tensor, sem: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """pseudo_bce_weight · BCE(pseudo labels as logits, y) of the intra and (with
        prototypes) cross branches; the margins get their gradient through the clamp."""
        b, q = y.shape
        full = torch.eye(q, device=y.device, dtype=co.dtype).repeat(b, 1, 1)
        prob = torch.sigmoid(co)
        full[:, self.pairs[0], self.pairs[1]] = prob
        full[:, self.pairs[1], self.pairs[0]] = prob
        score = (full * y.unsqueeze(1)).sum(2) / y.sum(1, keepdim=True).clamp(min=1)
        total = self.pseudo_bce_weight * F.binary_cross_entropy_with_logits(
            clamp_keeping_bounds(score - self.intra_margin), y
        )
        if bool(self.has_prototypes):
            score = self._prototype_similarity(sem)
            total = total + self.pseudo_bce_weight * F.binary_cross_entropy_with_logits(
                clamp_keeping_bounds(score - self.inter_margin), y
            )
        return total

    def _prototype_similarity(self, sem: torch.Tensor) -> torch.Tensor:
        """(b, q): mean cosine of each label's vector to that label's prototypes."""
        bank = F.normalize(self.prototype_bank.to(sem.dtype), dim=-1, eps=1e-9)
        return torch.einsum("bqc,qkc->bqk", F.normalize(sem, dim=-1, eps=1e-9), bank).mean(-1)

    def objective(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x images (b, 3, H, W), y (b, q) 0/1 -> (logits (b, q), loss); see the module notes."""
        logits, co, sem = self._heads(x)
        co, sem = co.float(), sem.float()  # losses in float32 under bf16 autocast
        y = y.to(torch.float32)
        bce = F.binary_cross_entropy_with_logits(logits, y)
        ramp = min(1.0, self._step / self._steps) if self.epoch == 0 else 1.0
        if self.training:
            self._step += 1
        loss = self.bce_weight * bce + ramp * (
            self.intra_weight * pair_asymmetric_loss(co, y, self.pairs)
            + self.inter_weight * instance_contrastive_loss(sem, y)
        )
        if self.epoch >= self.generate_label_epoch:
            if bool(self.has_prototypes):
                s = self._prototype_similarity(sem)
                pull = y * (1 - s) + (1 - y) * (1 + s)  # "paper": positives towards their prototypes
                loss = loss + self.inter_weight * (pull if self.prototype_loss == "paper" else 2 - pull).mean()
            loss = loss + self._pseudo_terms(co, sem, y)
        return logits, loss
