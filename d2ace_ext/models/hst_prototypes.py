"""HST's prototypes (module notes of ``hst``): k-means centres of each label's positive
semantic vectors, the bank the cross-image branch and the prototype loss compare to."""

from __future__ import annotations

import torch


def kmeans_prototypes(
    found: list[list[torch.Tensor]], template: torch.Tensor, *, kmeans_init: int, sample: int | None, seed: int
) -> torch.Tensor:
    """Prototype bank (q, prototypes, dim) on the CPU, of ``template``'s shape and dtype,
    from ``found[c]``, the positive semantic vectors (m_c, dim) of label c in parts:
    k = min(prototypes, m_c) k-means centres (``kmeans_init`` restarts, seeded), the rest
    repeating the first centre; at most ``sample`` vectors per label, drawn with a
    generator seeded ``seed``."""
    from sklearn.cluster import KMeans  # looked up per call, so a patched sklearn.cluster.KMeans is used

    q, prototypes, dim = template.shape
    bank = torch.zeros_like(template, device="cpu")
    generator = torch.Generator().manual_seed(seed)
    for c in range(q):
        feats = torch.cat(found[c]) if found[c] else torch.zeros(0, dim)
        if sample is not None and feats.shape[0] > sample:
            feats = feats[torch.randperm(feats.shape[0], generator=generator)[:sample]]
        k = min(prototypes, feats.shape[0])
        if k:  # a label without positives keeps zero prototypes: cosine 0, a constant loss
            centres = KMeans(n_clusters=k, n_init=kmeans_init, random_state=seed).fit(feats.numpy()).cluster_centers_
            bank[c, :k] = torch.as_tensor(centres)
            bank[c, k:] = bank[c, :1]  # fewer positives than prototypes: repeat one centre
    return bank
