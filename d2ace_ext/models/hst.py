"""HST (Chen, Pu, Liu, Shi, Yang & Lin, IJCV 2024): heterogeneous semantic transfer,
with the D2ACE paper's Appendix D.1 settings (θ_intra = θ_cross = 1.0, intra
co-occurrence weight 1.0, inter distance weight 1.0, 50 prototypes).

Network: backbone map -> 1×1 conv + BN to ``image_dim`` (1024) -> semantic decoupling
(label-embedding-guided attention over positions, one C-vector per label) -> gated GNN
(3 steps) over the label graph -> tanh(fc([gnn, semantic])) -> one classifier per label.
An intra-image head scores every label pair's co-occurrence from the semantic vectors.

Objective on complete labels (the D2ACE setting), with ``w`` the weights above:
mean BCE + w_intra · pair asymmetric loss + w_inter · instance contrastive loss, and from
epoch ``generate_label_epoch`` (5) on, + w_inter · prototype loss (+ 0.1 · BCE of each
pseudo-label branch against the labels); after that epoch everything but the BCE is
divided by 3 (see below). Choices, one line each:
* word embeddings: a user file (GloVe in HST) or one-hot (q, q) inputs;
* label graph: P(L_j | L_i) from the training labels, zero diagonal, in = A, out = Aᵀ;
* with no unknown labels, the released code's three BCE terms (labels, intra and cross
  pseudo-complemented labels) are identical, so the objective is the released one / 3,
  keeping the BCE at weight 1 (the MultiLabelModel contract);
* θ = 1.0 as the paper sets: pseudo labels clamp(score − θ, 0, 1) are then 0 with no
  gradient, so the pseudo-label BCE terms are constants; they are computed only for θ < 1;
* margins fixed (the released script makes them learnable, but clamped terms give them no gradient);
* instance contrastive loss: cosine over batch pairs per label, pos-pos 1 − cos, pos-neg and
  neg-neg 1 + cos, the latter two cut to 2P random + P hardest when P pos-pos pairs exist;
* prototype loss: y (1 − s̄) + (1 − y)(1 + s̄), s̄ the mean cosine to the label's prototypes
  (the released code's sign pulls negatives *towards* positive prototypes; read as a slip);
* prototypes: k-means (k = min(50, positives), ≤ 20,000 positives sampled per label) on the
  semantic vectors of each label's positive training images, at epochs 5, 10, 15, ...
  (``start_epoch`` gets a pass over the training set from the protocol);
* epoch 0 ramps the pair and instance terms linearly over its steps (released code);
* backbone: with a checkpoint only layer4 trained, earlier BatchNorm frozen (released code);
  from random weights every layer trains (frozen random layers would be fixed noise).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .backbone import Backbone, label_embeddings
from .base import LabelwiseLinear, MultiLabelModel


def conditional_cooccurrence(labels: torch.Tensor) -> torch.Tensor:
    """(n, q) 0/1 -> (q, q) P(L_j | L_i) in row i, zero diagonal."""
    y = labels.double()
    counts = y.T @ y
    cond = counts / counts.diagonal().clamp(min=1).unsqueeze(1)
    return cond.fill_diagonal_(0).float()


class SemanticDecoupling(nn.Module):
    """map (b, C, h, w), words (q, d_w) -> per-label vectors (b, q, C): a softmax over
    positions, scored from tanh(W1 f ⊙ W2 e_c), weights the map's positions."""

    def __init__(self, channels: int, word_dim: int, hidden: int = 512) -> None:
        super().__init__()
        self.fc1 = nn.Linear(channels, hidden, bias=False)
        self.fc2 = nn.Linear(word_dim, hidden, bias=False)
        self.fc3 = nn.Linear(hidden, hidden)
        self.fc4 = nn.Linear(hidden, 1)

    def forward(self, fmap: torch.Tensor, words: torch.Tensor) -> torch.Tensor:
        f = fmap.flatten(2).transpose(1, 2)                                    # (b, hw, C)
        joint = torch.tanh(self.fc1(f).unsqueeze(2) * self.fc2(words))        # (b, hw, q, hidden)
        weights = torch.softmax(self.fc4(self.fc3(joint)).squeeze(-1), dim=1)  # over positions
        return torch.einsum("bpq,bpc->bqc", weights, f)


class GatedGNN(nn.Module):
    """h (b, q, C) -> h (b, q, C) after ``steps`` GRU-style updates over graph A (q, q)."""

    def __init__(self, dim: int, adjacency: torch.Tensor, steps: int = 3) -> None:
        super().__init__()
        self.steps = steps
        self.register_buffer("adjacency", adjacency)
        self.w = nn.ModuleList(nn.Linear(2 * dim, dim) for _ in range(3))
        self.u = nn.ModuleList(nn.Linear(dim, dim) for _ in range(3))

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        a_in, a_out = self.adjacency.to(h.dtype), self.adjacency.T.to(h.dtype)
        for _ in range(self.steps):
            a = torch.cat((a_in @ h, a_out @ h), dim=-1)
            z = torch.sigmoid(self.w[0](a) + self.u[0](h))
            r = torch.sigmoid(self.w[1](a) + self.u[1](h))
            h = (1 - z) * h + z * torch.tanh(self.w[2](a) + self.u[2](r * h))
        return h


def pair_asymmetric_loss(logits: torch.Tensor, y: torch.Tensor, pairs: torch.Tensor, gamma_neg: float = 2.0,
                         gamma_pos: float = 1.0, clip: float = 0.05, eps: float = 1e-8) -> torch.Tensor:
    """Mean asymmetric loss of pair logits (b, P) against 'both labels present'."""
    t = y[:, pairs[0]] * y[:, pairs[1]]
    p = torch.sigmoid(logits)
    p_neg = (1 - p + clip).clamp(max=1)
    loss = -(t * torch.log(p.clamp(min=eps)) + (1 - t) * torch.log(p_neg.clamp(min=eps)))
    prob = p * t + p_neg * (1 - t)
    return (loss * torch.pow(1 - prob, gamma_pos * t + gamma_neg * (1 - t))).mean()


def instance_contrastive_loss(sem: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Across the batch, per label: same-positive pairs pulled together, others apart."""
    b = sem.shape[0]
    i, j = torch.triu_indices(b, b, 1, device=sem.device)
    if i.numel() == 0:
        return sem.sum() * 0
    cos = F.cosine_similarity(sem[i], sem[j], dim=-1, eps=1e-9)       # (pairs, q)
    both = y[i] * y[j]
    none = (1 - y[i]) * (1 - y[j])
    pp, pn, nn_ = (1 - cos)[both > 0], (1 + cos)[(both == 0) & (none == 0)], (1 + cos)[none > 0]
    if pp.numel():
        k = pp.numel()
        pick = lambda v: torch.cat((v[torch.randperm(v.numel(), device=v.device)[:2 * k]],   # noqa: E731
                                    torch.sort(v, descending=True)[0][:k]))
        pn, nn_ = pick(pn), pick(nn_)
    loss = torch.cat((pp, pn, nn_))
    return loss.mean() if loss.numel() else sem.sum() * 0


class HST(MultiLabelModel):
    """images (b, 3, H, W) (or feature maps with backbone="none") -> logits (b, q).

    in_features: 3 for images, the channel count for backbone="none". train_labels build
    the label graph (required). ``trainable``: default "layer4" with a checkpoint, else
    "all". Weights ``intra_weight`` / ``inter_weight`` (1.0, paper), margins
    ``theta_intra`` / ``theta_cross`` (1.0), ``prototypes`` (50).
    """

    def __init__(self, in_features: int, num_labels: int, train_labels: torch.Tensor | None = None, *,
                 backbone: str = "resnet101", checkpoint: str | None = None, trainable: str | None = None,
                 embeddings: str | None = None, image_dim: int = 1024, hidden: int = 512, output_dim: int = 1024,
                 steps: int = 3, theta_intra: float = 1.0, theta_cross: float = 1.0, intra_weight: float = 1.0,
                 inter_weight: float = 1.0, pseudo_bce_weight: float = 0.1, prototypes: int = 50,
                 generate_label_epoch: int = 5, prototype_every: int = 5) -> None:
        super().__init__()
        if train_labels is None:
            raise ValueError("HST builds its label graph from train_labels (n, q); pass them")
        q = num_labels
        if trainable is None:   # freezing layers only keeps something when they hold pretrained weights
            trainable = "layer4" if checkpoint else "all"
        self.backbone = Backbone(backbone, in_features, checkpoint=checkpoint, trainable=trainable)
        c = self.backbone.out_channels
        self.project = (nn.Sequential(nn.Conv2d(c, image_dim, 1, bias=False), nn.BatchNorm2d(image_dim))
                        if c != image_dim else nn.Identity())
        self.register_buffer("words", label_embeddings(embeddings, q))
        self.decouple = SemanticDecoupling(image_dim, self.words.shape[1], hidden)
        self.gnn = GatedGNN(image_dim, conditional_cooccurrence(train_labels), steps)
        self.fc = nn.Linear(2 * image_dim, output_dim)
        self.classifier = LabelwiseLinear(q, output_dim)
        self.register_buffer("pairs", torch.triu_indices(q, q, 1))
        self.intra = nn.Sequential(nn.Linear(image_dim, hidden))
        self.intra_head = nn.Sequential(nn.Linear(2 * hidden, output_dim), nn.ReLU(), nn.Linear(output_dim, output_dim))
        self.intra_classifier = LabelwiseLinear(self.pairs.shape[1], output_dim)
        self.theta_intra, self.theta_cross = theta_intra, theta_cross
        self.intra_weight, self.inter_weight, self.pseudo_bce_weight = intra_weight, inter_weight, pseudo_bce_weight
        self.num_prototypes, self.generate_label_epoch, self.prototype_every = prototypes, generate_label_epoch, prototype_every
        # Fixed shapes so a checkpoint loads into a fresh model; ``has_prototypes`` says when they are set.
        self.register_buffer("prototype_bank", torch.zeros(q, prototypes, image_dim))
        self.register_buffer("has_prototypes", torch.zeros((), dtype=torch.bool))
        self.num_labels = q
        self.epoch, self._step, self._steps = 0, 0, 1

    def semantic(self, x: torch.Tensor) -> torch.Tensor:
        """(b, q, image_dim) per-label vectors."""
        return self.decouple(self.project(self.backbone(x)), self.words.to(x.dtype))

    def _heads(self, x: torch.Tensor):
        sem = self.semantic(x)
        b, q, _ = sem.shape
        out = torch.tanh(self.fc(torch.cat((self.gnn(sem), sem), dim=-1)))
        logits = self.classifier(out)
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
    def compute_prototypes(self, batches, max_per_label: int = 20000, seed: int = 0) -> None:
        from sklearn.cluster import KMeans
        was_training = self.training
        self.eval()
        q = self.num_labels
        found: list[list[torch.Tensor]] = [[] for _ in range(q)]
        for x, y in batches:
            with torch.autocast("cuda", dtype=torch.bfloat16, enabled=x.is_cuda):   # as the training steps
                sem = self.semantic(x).float().cpu()
            y = y.cpu()
            for c in range(q):
                found[c].append(sem[y[:, c] > 0, c])
        dim = self.prototype_bank.shape[-1]
        bank = torch.zeros_like(self.prototype_bank, device="cpu")
        generator = torch.Generator().manual_seed(seed)
        for c in range(q):
            feats = torch.cat(found[c]) if found[c] else torch.zeros(0, dim)
            if feats.shape[0] > max_per_label:
                feats = feats[torch.randperm(feats.shape[0], generator=generator)[:max_per_label]]
            k = min(self.num_prototypes, feats.shape[0])
            if k:  # a label without positives keeps zero prototypes: cosine 0, a constant loss
                centres = KMeans(n_clusters=k, n_init=1, random_state=seed).fit(feats.numpy()).cluster_centers_
                bank[c, :k] = torch.as_tensor(centres)
                bank[c, k:] = bank[c, :1]    # fewer positives than prototypes: repeat one centre
        self.prototype_bank.copy_(bank)
        self.has_prototypes.fill_(True)
        self.train(was_training)

    def _pseudo_terms(self, co: torch.Tensor, sem: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """0.1 · BCE(pseudo labels as logits, y) of each branch, only when a margin < 1."""
        total = co.new_zeros(())
        if self.theta_intra < 1:
            b, q = y.shape
            full = torch.eye(q, device=y.device, dtype=co.dtype).repeat(b, 1, 1)
            prob = torch.sigmoid(co)
            full[:, self.pairs[0], self.pairs[1]] = prob
            full[:, self.pairs[1], self.pairs[0]] = prob
            score = (full * y.unsqueeze(1)).sum(2) / y.sum(1, keepdim=True).clamp(min=1)
            total = total + self.pseudo_bce_weight * F.binary_cross_entropy_with_logits(
                (score - self.theta_intra).clamp(0, 1), y)
        if self.theta_cross < 1 and bool(self.has_prototypes):
            score = self._prototype_similarity(sem)
            total = total + self.pseudo_bce_weight * F.binary_cross_entropy_with_logits(
                (score - self.theta_cross).clamp(0, 1), y)
        return total

    def _prototype_similarity(self, sem: torch.Tensor) -> torch.Tensor:
        """(b, q): mean cosine of each label's vector to that label's prototypes."""
        bank = F.normalize(self.prototype_bank.to(sem.dtype), dim=-1, eps=1e-9)
        return torch.einsum("bqc,qkc->bqk", F.normalize(sem, dim=-1, eps=1e-9), bank).mean(-1)

    def objective(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x images (b, 3, H, W), y (b, q) 0/1 -> (logits (b, q), loss); see the module notes."""
        logits, co, sem = self._heads(x)
        co, sem = co.float(), sem.float()   # losses in float32 under bf16 autocast
        y = y.to(torch.float32)
        bce = F.binary_cross_entropy_with_logits(logits, y)
        ramp = min(1.0, self._step / self._steps) if self.epoch == 0 else 1.0
        if self.training:
            self._step += 1
        extra = ramp * (self.intra_weight * pair_asymmetric_loss(co, y, self.pairs)
                        + self.inter_weight * instance_contrastive_loss(sem, y))
        if self.epoch >= self.generate_label_epoch:
            if bool(self.has_prototypes):
                s = self._prototype_similarity(sem)
                extra = extra + self.inter_weight * (y * (1 - s) + (1 - y) * (1 + s)).mean()
            extra = (extra + self._pseudo_terms(co, sem, y)) / 3
        return logits, bce + extra
