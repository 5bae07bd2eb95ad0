"""The GIST hybrid graph-transformer autoencoder (the original's ``TransImg``).

Parameter names and shapes follow the original exactly, so its published state dicts load with
``strict=True``. Every layer is a single-head graph transformer layer, computed by
:class:`gist.tl.nn.TransformerConv` (PyG's ``TransformerConv`` numbers, faster for wide layers).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gist.tl.nn import Graph, TransformerConv, as_graph


class GistOutput(NamedTuple):
    """Everything one forward pass computes (the original returned the first six as a tuple)."""

    gene_z: Tensor  # gene-branch latent (h2)
    img_z: Tensor | None  # image-branch latent (img2)
    fused_z: Tensor  # fused latent (c2): what GIST clusters
    gene_recon: Tensor  # gene-branch reconstruction of expression (h4)
    img_recon: Tensor | None  # image-branch reconstruction (img4): expression, or image features with use_img_loss
    fused_recon: Tensor  # fused reconstruction of expression (c4): the denoised expression
    fused_img_recon: Tensor | None = None  # fused reconstruction of the image features (fused_img_head only)


class TransImg(nn.Module):
    """Gene branch, image branch and a fused branch over one spatial graph.

    Parameters
    ----------
    hidden_dims
        ``[n_genes, img_dim, num_hidden, out_dim]``; the paper uses ``[n_genes, img_dim, 512, 30]``.
    use_img_loss
        When true the image branch reconstructs the image features (``imgconv4`` outputs
        ``img_dim``); otherwise it reconstructs expression, as in the paper.
    fused_img_head
        Add ``c4_img``, a layer that reconstructs the image features from the fused branch, so that
        image information that does not predict expression still has to pass through the fused
        latent (the ``gist`` recipe; not in the original). Needs ``img_dim > 0``.
    standardize_img
        Z-score the image features inside the model with stored statistics (buffers ``img_center``
        and ``img_scale``, set by :meth:`set_image_scaling` from the training cells), so that
        features of any scale (the 0-1 ``stats`` descriptor, 1,024-d foundation embeddings) enter
        alike and a checkpoint carries its own scaling. The ``gist`` recipe; not in the original.
    hops
        How many graph layers pass messages, counted from the input along each encoder path
        (gene: ``conv1``, ``conv2``; image: ``imgconv1``, ``imgconv2``; fused: then ``neck``,
        ``neck2``); the other layers, decoders included, are per-cell (their skip term alone), so
        the fused latent sees ``hops`` rings of neighbours. ``None`` (the original): every layer.
        Stored as the buffer ``message_hops``. Not in the original.
    n_pcs
        Feed the model the first ``n_pcs`` principal components of the expression instead of the
        genes (buffers ``pca_components``, ``pca_mean``, set by :meth:`set_pca` from the training
        cells); the decoders reconstruct the components, and :meth:`to_genes` maps a
        reconstruction back to genes through the loadings, so the denoised output is still genes.
        ``hidden_dims[0]`` stays the number of genes. Not in the original.
    contrast
        Add a Deep Graph Infomax head (``contrast_head``, a bilinear discriminator, and the buffer
        ``contrast_weight``): training then also asks the fused latent to tell each cell's real
        neighbourhood summary from that of feature-shuffled cells (:func:`contrast_loss`, as
        GraphST and CCST). The head is used in training only. Not in the original.
    neighbour_input
        BANKSY's ``lambda`` (0 < lambda < 1; needs ``n_pcs``): the encoders read each cell's
        components beside the mean of its graph neighbours' (:func:`neighbour_mean`), weighted
        ``sqrt(1 - lambda)`` and ``sqrt(lambda)`` (buffer ``neighbour_lambda``); the decoders still
        reconstruct the cell's own components. Not in the original.

    Notes
    -----
    ``norm1`` and ``norm2`` are defined but unused, as in the original, so that state-dict keys match.
    ``img_dim = 0`` builds the gene branch alone (for data without an image): no ``imgconv*``,
    ``neck*``, ``c3``, ``c4``; the gene latent and reconstruction then stand in for the fused ones.
    Without ``fused_img_head`` the parameters are exactly the original's, so its published state
    dicts load with ``strict=True``.
    """

    def __init__(self, hidden_dims: Sequence[int], use_img_loss: bool = False, fused_img_head: bool = False,
                 standardize_img: bool = False, hops: int | None = None, n_pcs: int | None = None,
                 contrast: bool = False, neighbour_input: float | None = None) -> None:
        super().__init__()
        if len(hidden_dims) != 4:
            raise ValueError(f"hidden_dims must be [n_genes, img_dim, num_hidden, out_dim], got {list(hidden_dims)}")
        n_genes, img_dim, num_hidden, out_dim = (int(d) for d in hidden_dims)
        if (fused_img_head or standardize_img) and img_dim <= 0:
            raise ValueError("fused_img_head and standardize_img need image features (img_dim > 0)")
        if hops is not None and not 0 <= int(hops) <= 4:
            raise ValueError(f"hops must be 0..4 (graph layers on the encoder path), got {hops}")
        if n_pcs is not None and not 1 <= int(n_pcs) <= n_genes:
            raise ValueError(f"n_pcs must be 1..{n_genes} (the number of genes), got {n_pcs}")
        if neighbour_input is not None and (n_pcs is None or not 0 < float(neighbour_input) < 1):
            raise ValueError(f"neighbour_input (lambda) must be in (0, 1) and needs n_pcs, got {neighbour_input} with n_pcs {n_pcs}")
        self.hidden_dims = [n_genes, img_dim, num_hidden, out_dim]
        self.use_img_loss = use_img_loss
        self.fused_img_head = bool(fused_img_head)
        self.hops = None if hops is None else int(hops)
        self.n_pcs = None if n_pcs is None else int(n_pcs)
        in_dim = self.n_pcs or n_genes  # what the gene branch reads and its decoders reconstruct
        self.neighbour_input = None if neighbour_input is None else float(neighbour_input)

        self.conv1 = TransformerConv(2 * in_dim if self.neighbour_input else in_dim, num_hidden)
        self.conv2 = TransformerConv(num_hidden, out_dim)
        self.conv3 = TransformerConv(out_dim, num_hidden)
        self.conv4 = TransformerConv(num_hidden, in_dim)

        self.has_image = img_dim > 0
        if self.has_image:
            self.imgconv1 = TransformerConv(img_dim, num_hidden)
            self.imgconv2 = TransformerConv(num_hidden, out_dim)
            self.imgconv3 = TransformerConv(out_dim, num_hidden)
            self.imgconv4 = TransformerConv(num_hidden, img_dim if use_img_loss else in_dim)

            self.neck = TransformerConv(out_dim * 2, out_dim)
            self.neck2 = TransformerConv(out_dim, out_dim)
            self.c3 = TransformerConv(out_dim, num_hidden)
            self.c4 = TransformerConv(num_hidden, in_dim)

        self.norm1 = nn.LayerNorm(num_hidden)
        self.norm2 = nn.LayerNorm(out_dim)
        if self.fused_img_head:
            self.c4_img = TransformerConv(num_hidden, img_dim)
        self.standardize_img = bool(standardize_img)
        if self.standardize_img:
            self.register_buffer("img_center", torch.zeros(img_dim))
            self.register_buffer("img_scale", torch.ones(img_dim))
        if self.hops is not None:
            self.register_buffer("message_hops", torch.tensor(self.hops))
        if self.n_pcs is not None:
            self.register_buffer("pca_components", torch.zeros(self.n_pcs, n_genes))
            self.register_buffer("pca_mean", torch.zeros(n_genes))
        if self.neighbour_input is not None:
            self.register_buffer("neighbour_lambda", torch.tensor(self.neighbour_input))
        self.contrast = bool(contrast)
        if self.contrast:
            self.contrast_head = nn.Bilinear(out_dim, out_dim, 1)
            self.register_buffer("contrast_weight", torch.tensor(0.0))  # 0: not set yet (set_contrast_weight)
        self.activate = F.elu

    @property
    def depth(self) -> int:
        """Graph layers between an input and the last output (message-passing depth): a cell's
        outputs depend on the cells within this many edges (4 for the gene branch, 6 when fused;
        ``hops`` when set; one more with ``neighbour_input``)."""
        extra = int(self.neighbour_input is not None)
        if self.hops is not None:
            return extra + (self.hops if self.has_image else min(self.hops, 2))
        return extra + (6 if self.has_image else 4)

    def _graphs(self, graph: Graph, n: int) -> dict[str, Graph]:
        """The graph each layer uses: the sample's, or none (a per-cell layer) beyond ``hops``."""
        names = ("conv1", "conv2", "conv3", "conv4", "imgconv1", "imgconv2", "imgconv3", "imgconv4",
                 "neck", "neck2", "c3", "c4", "c4_img")
        if self.hops is None:
            return dict.fromkeys(names, graph)
        position = {"conv1": 1, "imgconv1": 1, "conv2": 2, "imgconv2": 2, "neck": 3, "neck2": 4}
        alone = Graph(torch.zeros((2, 0), dtype=torch.long, device=graph.src.device), n)
        return {name: graph if position.get(name, 99) <= self.hops else alone for name in names}

    @torch.no_grad()
    def set_pca(self, x: Tensor, max_cells: int = 20000, seed: int = 0) -> None:
        """Store the mean and the first ``n_pcs`` principal axes of ``x`` (cells x genes, the
        training cells' normalised log expression; at most ``max_cells`` rows, drawn with ``seed``),
        each axis signed so that its largest loading is positive."""
        if self.n_pcs is None:
            raise ValueError("this model was built without n_pcs")
        x = x.float()
        if x.shape[0] > max_cells:
            rows = torch.randperm(x.shape[0], generator=torch.Generator().manual_seed(seed))[:max_cells]
            x = x[rows.to(x.device)]
        mean = x.mean(0)
        _, _, vh = torch.linalg.svd(x - mean, full_matrices=False)
        axes = vh[: self.n_pcs]
        flip = torch.sign(axes.gather(1, axes.abs().argmax(1, keepdim=True)))
        self.pca_mean.copy_(mean)
        self.pca_components.zero_()
        self.pca_components[: axes.shape[0]].copy_(axes * flip)

    def project(self, x: Tensor) -> Tensor:
        """The expression as the gene branch reads it: ``x`` itself, or its principal components."""
        if self.n_pcs is None:
            return x
        return (x - self.pca_mean) @ self.pca_components.t()

    def encoder_input(self, features: Tensor, graph: Graph) -> Tensor:
        """What the gene encoder reads: :meth:`project`, beside its neighbour mean with ``neighbour_input``."""
        own = self.project(features)
        if self.neighbour_input is None:
            return own
        lam = self.neighbour_input
        return torch.cat([math.sqrt(1 - lam) * own, math.sqrt(lam) * neighbour_mean(own, graph)], dim=1)

    def to_genes(self, recon: Tensor) -> Tensor:
        """A reconstruction in gene space (through the loadings when the model reads components)."""
        if self.n_pcs is None:
            return recon
        return recon @ self.pca_components + self.pca_mean

    @torch.no_grad()
    def set_contrast_weight(self, weight: float) -> None:
        """Store the weight of the contrastive term (:func:`contrast_loss`) in ``contrast_weight``."""
        if not self.contrast:
            raise ValueError("this model was built without contrast")
        self.contrast_weight.fill_(float(weight))

    @torch.no_grad()
    def set_image_scaling(self, img_feat: Tensor) -> None:
        """Store the mean and standard deviation of ``img_feat`` (all training cells) for
        :meth:`standardize`; constant features keep a scale of 1."""
        if not self.standardize_img:
            raise ValueError("this model was built without standardize_img")
        img_feat = img_feat.float()
        self.img_center.copy_(img_feat.mean(0))
        scale = img_feat.std(0, unbiased=False)
        self.img_scale.copy_(torch.where(scale > 1e-8, scale, torch.ones_like(scale)))

    def standardize(self, img_feat: Tensor | None) -> Tensor | None:
        """The image features as the image branch sees them (z-scored with ``standardize_img``)."""
        if img_feat is None or not self.standardize_img:
            return img_feat
        return (img_feat - self.img_center) / self.img_scale

    def encode(self, features: Tensor, img_feat: Tensor | None, edge_index: Tensor | Graph) -> Tensor:
        """The fused latent alone (encoder layers only; equal to ``forward(...).fused_z`` at a
        fraction of the cost when no reconstruction is needed)."""
        graph = as_graph(edge_index, features.shape[0])
        g = self._graphs(graph, features.shape[0])
        h2 = self.conv2(self.activate(self.conv1(self.encoder_input(features, graph), g["conv1"])), g["conv2"])
        if not self.has_image:
            return h2
        img2 = self.imgconv2(self.activate(self.imgconv1(self.standardize(img_feat), g["imgconv1"])), g["imgconv2"])
        return self.neck2(self.activate(self.neck(torch.cat([h2, img2], dim=1), g["neck"])), g["neck2"])

    def forward(self, features: Tensor, img_feat: Tensor | None, edge_index: Tensor | Graph) -> GistOutput:
        """Run the three branches on one sample.

        ``edge_index`` is a PyG ``(2, edges)`` tensor or a prepared :class:`gist.tl.nn.Graph` (built
        once per sample and reused). Without an image branch the image outputs are ``None`` and the
        fused ones are the gene ones.
        """
        graph = as_graph(edge_index, features.shape[0])
        g = self._graphs(graph, features.shape[0])
        h1 = self.activate(self.conv1(self.encoder_input(features, graph), g["conv1"]))
        h2 = self.conv2(h1, g["conv2"])
        h3 = self.activate(self.conv3(h2, g["conv3"]))
        h4 = self.conv4(h3, g["conv4"])
        if not self.has_image:
            return GistOutput(h2, None, h2, h4, None, h4)

        img1 = self.activate(self.imgconv1(self.standardize(img_feat), g["imgconv1"]))
        img2 = self.imgconv2(img1, g["imgconv2"])
        img3 = self.activate(self.imgconv3(img2, g["imgconv3"]))
        img4 = self.imgconv4(img3, g["imgconv4"])

        combine = self.activate(self.neck(torch.cat([h2, img2], dim=1), g["neck"]))
        c2 = self.neck2(combine, g["neck2"])
        c3 = self.activate(self.c3(c2, g["c3"]))
        c4 = self.c4(c3, g["c4"])
        c4_img = self.c4_img(c3, g["c4_img"]) if self.fused_img_head else None
        return GistOutput(h2, img2, c2, h4, img4, c4, c4_img)


def gist_loss(out: GistOutput, x: Tensor, img: Tensor | None, use_img_loss: bool = False) -> Tensor:
    """The paper's loss, plus the fused image term when the model has ``c4_img``.

    ``0.1 * MSE(x, gene recon) + 0.1 * MSE(target, image recon) + MSE(x, fused recon)`` where the
    image reconstruction targets ``img`` when ``use_img_loss`` is true, else ``x``; with
    ``fused_img_head``, ``+ MSE(img, fused image recon)``. Without an image branch the loss is
    ``MSE(x, gene recon)``.
    """
    if out.img_recon is None:
        return F.mse_loss(out.gene_recon, x)
    img_target = img if use_img_loss else x
    loss = 0.1 * F.mse_loss(out.gene_recon, x) + 0.1 * F.mse_loss(out.img_recon, img_target) + F.mse_loss(out.fused_recon, x)
    if out.fused_img_recon is not None:
        loss = loss + F.mse_loss(out.fused_img_recon, img)
    return loss


def neighbour_mean(z: Tensor, graph: Graph) -> Tensor:
    """The mean of ``z`` over each cell's in-neighbours in ``graph`` (0 for a cell without any)."""
    total = torch.zeros_like(z).index_add_(0, graph.dst, z[graph.src])
    degree = graph.crow.diff().clamp(min=1).unsqueeze(1).to(z.dtype)  # in-degrees, from the CSR layout
    return total / degree


def neighbour_summary(z: Tensor, graph: Graph) -> Tensor:
    """GraphST's local read-out: ``sigmoid`` of the L2-normalised :func:`neighbour_mean` of ``z``
    (a cell without neighbours summarises to ``sigmoid(0)``)."""
    return torch.sigmoid(F.normalize(neighbour_mean(z, graph), p=2, dim=1))


def contrast_loss(model: TransImg, z: Tensor, z_corrupt: Tensor, graph: Graph, rows: Tensor | None = None) -> Tensor:
    """Deep Graph Infomax on the fused latent, in GraphST's symmetric form.

    ``z`` is the latent of the real cells and ``z_corrupt`` that of the same graph with the cells'
    features shuffled. The discriminator (``model.contrast_head``) scores a cell's latent against
    its neighbourhood summary (:func:`neighbour_summary`): real latents against the real summary
    are positives and corrupted ones negatives, and the reverse against the corrupted summary.
    The mean binary cross-entropy of the four terms' halves, over ``rows`` (a tile's own cells) or all.
    """
    g = as_graph(graph, z.shape[0])
    summary, summary_corrupt = neighbour_summary(z, g), neighbour_summary(z_corrupt, g)
    if rows is not None:
        z, z_corrupt, summary, summary_corrupt = (t[rows] for t in (z, z_corrupt, summary, summary_corrupt))
    head = model.contrast_head
    logits = torch.cat([head(z, summary), head(z_corrupt, summary), head(z_corrupt, summary_corrupt), head(z, summary_corrupt)])
    n = z.shape[0]
    target = torch.cat([torch.ones(n, 1), torch.zeros(n, 1), torch.ones(n, 1), torch.zeros(n, 1)]).to(logits)
    return 2 * F.binary_cross_entropy_with_logits(logits, target)  # the mean of two DGI losses, each a sum of two halves


def dims_from_state_dict(state: dict[str, Tensor]) -> tuple[list[int], dict]:
    """Recover ``hidden_dims`` and the options (``use_img_loss``, ``fused_img_head``,
    ``standardize_img``, ``hops``, ``n_pcs``, ``contrast``, ``neighbour_input``) of a TransImg state dict, ours or the original's."""
    try:
        num_hidden, in_dim = state["conv1.lin_key.weight"].shape
        neighbour = float(state["neighbour_lambda"]) if "neighbour_lambda" in state else None
        out_dim = state["conv2.lin_key.weight"].shape[0]
        hops = int(state["message_hops"]) if "message_hops" in state else None
        n_pcs, n_genes = (int(d) for d in state["pca_components"].shape) if "pca_components" in state else (None, int(in_dim))
        if "imgconv1.lin_key.weight" not in state:  # gene branch alone
            return [n_genes, 0, int(num_hidden), int(out_dim)], {"use_img_loss": False, "fused_img_head": False,
                                                                  "standardize_img": False, "hops": hops, "n_pcs": n_pcs,
                                                                  "contrast": "contrast_head.weight" in state,
                                                                  "neighbour_input": neighbour}
        img_dim = state["imgconv1.lin_key.weight"].shape[1]
        img_out = state["imgconv4.lin_key.weight"].shape[0]
    except KeyError as err:
        raise ValueError(f"not a TransImg state dict: key {err} missing") from None
    recon_dim = state["conv4.lin_key.weight"].shape[0]  # what the decoders reconstruct (genes or components)
    options = {"use_img_loss": bool(img_out == img_dim and img_out != recon_dim),
               "fused_img_head": "c4_img.lin_key.weight" in state, "standardize_img": "img_center" in state,
               "hops": hops, "n_pcs": n_pcs, "contrast": "contrast_head.weight" in state, "neighbour_input": neighbour}
    return [n_genes, int(img_dim), int(num_hidden), int(out_dim)], options
